"""Where the agent graph keeps its state: ``DIR/agents.sqlite``, or a PostgreSQL database.

A Postgres checkpointer is named by URL (``postgresql://USER@HOST:PORT/DB``). The password is
never kept in the URL that is saved, logged or shown: :func:`split_password` takes it out, and
a process that has none reads it the way every libpq client does (``PGPASSWORD``,
``~/.pgpass``). Unset parts of the URL come from the ``PG*`` environment variables too.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from skedit.prompts.errors import SkeditError

SQLITE_FILE = "agents.sqlite"
SCHEMES = ("postgresql", "postgres")
FIELD = "agents.checkpointer"
INSTALL = 'pip install "skedit[postgres]"'


def is_postgres_url(value: str | None) -> bool:
    return bool(value) and urlsplit(str(value)).scheme in SCHEMES


def split_password(url: str) -> tuple[str, str | None]:
    """``(url without its password, the password)``: from ``user:PASSWORD@`` or ``?password=``."""
    parts = urlsplit(url)
    password = parts.password
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hosts = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hosts}" if user else hosts
        password = unquote(password)
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k == "password" for k, _ in pairs):
        password = next(v for k, v in pairs if k == "password")
        query = urlencode([(k, v) for k, v in pairs if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)), password


def describe(url: str) -> str:
    """``user@host:port/db`` for messages, with libpq's defaults filled in from ``PG*``."""
    parts = urlsplit(split_password(url)[0])
    query = dict(parse_qsl(parts.query))
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        host = query.get("host") or os.environ.get("PGHOST") or "localhost"
        hosts = f"{host}:{query.get('port') or os.environ.get('PGPORT') or 5432}"
    elif ":" not in hosts.rpartition("]")[2]:
        hosts = f"{hosts}:{query.get('port') or os.environ.get('PGPORT') or 5432}"
    user = unquote(parts.username or "") or query.get("user") or os.environ.get("PGUSER")
    user = user or getpass.getuser()  # libpq's default, like the database's
    db = unquote(parts.path.lstrip("/")) or query.get("dbname") or os.environ.get("PGDATABASE")
    return f"{user}@{hosts}/{db or user}"


@contextmanager
def open_checkpointer(run_dir: Path, url: str | None, password: str | None = None) -> Iterator[Any]:
    """A LangGraph checkpointer: the run directory's SQLite file, or Postgres at ``url``."""
    if not url:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(run_dir / SQLITE_FILE, check_same_thread=False)
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()
        return
    with _postgres(url, password) as saver:
        yield saver


def _postgres_modules() -> tuple[Any, Any]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
    except ImportError as exc:
        raise SkeditError(
            "a Postgres checkpointer needs the optional 'postgres' dependencies "
            f"({exc.name or exc} is not installed)",
            field=FIELD,
            hint=f"{INSTALL}, or leave the checkpointer unset to use DIR/{SQLITE_FILE}",
        ) from None
    return psycopg, PostgresSaver


@contextmanager
def _postgres(url: str, password: str | None) -> Iterator[Any]:
    psycopg, PostgresSaver = _postgres_modules()
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import dict_row

    where = describe(url)
    secrets = [s for s in (password, os.environ.get("PGPASSWORD")) if s]
    extra: dict[str, Any] = {"password": password} if password else {}
    try:
        given = conninfo_to_dict(url)
        if "connect_timeout" not in given:
            extra["connect_timeout"] = 10
        if "client_encoding" not in given:
            # on a SQL_ASCII database psycopg returns text as bytes, and LangGraph then saves
            # the resumed steps under a thread id of b'...': the run never moves on
            extra["client_encoding"] = "UTF8"
        # PostgresSaver's documented settings: autocommit, no prepared statements, dict rows
        conn = psycopg.Connection.connect(
            url, autocommit=True, prepare_threshold=0, row_factory=dict_row, **extra
        )
    except psycopg.Error as exc:
        raise SkeditError(
            f"cannot connect to the checkpointer database {where}: {_reason(exc, secrets)}",
            field=FIELD,
            hint=_hint(str(exc)),
        ) from None
    try:
        with conn:
            saver = PostgresSaver(conn)
            try:
                saver.setup()  # creates or migrates LangGraph's tables; a no-op once done
            except psycopg.Error as exc:
                raise SkeditError(
                    f"cannot set up the checkpoint tables in {where}: {_reason(exc, secrets)}",
                    field=FIELD,
                    hint="the database user needs the right to create tables in that database",
                ) from None
            yield saver
    except psycopg.OperationalError as exc:
        raise SkeditError(
            f"lost the connection to the checkpointer database {where}: {_reason(exc, secrets)}",
            field=FIELD,
            hint="finished steps are saved there; run the same command again to resume",
        ) from None


def _reason(exc: Exception, secrets: list[str]) -> str:
    """libpq's message, one line, with the connection prefix and any secret removed."""
    text = " ".join(str(exc).split()).removeprefix("connection failed: ")
    for secret in secrets:
        text = text.replace(secret, "***")
    return text or type(exc).__name__


def _hint(message: str) -> str:
    m = message.lower()
    if "password" in m:
        return (
            "set PGPASSWORD, or add the server to ~/.pgpass (host:port:db:user:password, "
            "chmod 600); a password given in the URL is never saved to DIR/config.yaml"
        )
    if "does not exist" in m:
        return "create the database and role first (createdb / createuser), or fix the URL"
    return (
        "is the server running and reachable at that host and port? Fix the URL (--checkpointer, "
        "saved as agents.checkpointer in DIR/config.yaml)"
    )
