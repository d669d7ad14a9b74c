"""The agent graph's state in a real PostgreSQL server: a throwaway one started in a temp dir.

The run, the review from another process and the resume find the database from the run's
``config.yaml``; the password is never written or printed; a bad URL is a message, not a
traceback. Skipped where PostgreSQL's ``initdb`` or the ``postgres`` extra is missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from skedit.agents.config import AgentsConfig
from skedit.pipelines.cli import main
from skedit.prompts.io import read_jsonl, write_jsonl
from skedit.prompts.schema import DensePrompt, Edit

PASSWORD = "pg-Secret-4711"
PG_ENV = ("PGPASSWORD", "PGPASSFILE", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE")


@dataclass
class Server:
    port: int
    dbname: str = "postgres"
    user: str = "postgres"

    def url(self, password: str | None = PASSWORD) -> str:
        auth = f"{self.user}:{password}" if password else self.user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{self.dbname}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> dict:
    """initdb refuses root: as root, run the server as an unprivileged account."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    pytest.skip("running as root and no unprivileged account (postgres, nobody) to run initdb")


@pytest.fixture(scope="module")
def server():
    """A PostgreSQL server on 127.0.0.1 (password auth over TCP), removed afterwards."""
    missing = [tool for tool in ("initdb", "pg_ctl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"PostgreSQL server tools not on PATH ({', '.join(missing)})")
    pytest.importorskip(
        "psycopg", reason='needs the postgres extra: pip install "skedit[postgres]"'
    )
    pytest.importorskip("langgraph.checkpoint.postgres", reason="needs the postgres extra")
    as_user = _server_user()
    # not under pytest's tmp dir: as root that is private to root, and the server runs as another
    # user; the socket path must also stay short
    home = Path(tempfile.mkdtemp(prefix="skedit-pg-"))
    if as_user:
        os.chown(home, as_user["user"], as_user["group"])
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C", "LANG": "C"}
    kw = {"env": env, "cwd": home, "capture_output": True, "text": True, "timeout": 60, **as_user}
    pwfile = home / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        os.chown(pwfile, as_user["user"], as_user["group"])
    data, port = home / "data", _free_port()
    started = False
    try:
        init = subprocess.run(
            # SQL_ASCII, the harder case: psycopg hands LangGraph bytes unless skedit asks for UTF8
            ["initdb", "-D", str(data), "-U", "postgres", "-N", "-E", "SQL_ASCII"]
            + [f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256"],
            **kw,
        )
        assert init.returncode == 0, init.stderr
        opts = f"-k '{home}' -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = subprocess.run(
            ["pg_ctl", "-D", str(data), "-l", str(home / "log"), "-o", opts, "-w", "start"], **kw
        )
        started = start.returncode == 0
        assert started, start.stderr + (
            (home / "log").read_text() if (home / "log").exists() else ""
        )
        yield Server(port=port)
    finally:
        if started:
            subprocess.run(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"], **kw)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def no_pg_env(monkeypatch):
    for name in PG_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/pgpass")  # not the ~/.pgpass of whoever tests


def _edits() -> list[Edit]:
    return [
        Edit(subject=s, prompt=f"{s} lives in", target_new=city, relation="lives")
        for s, city in [("alice", "rome"), ("bob", "paris"), ("carol", "london")]
    ]


def _skedit(*args: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "skedit.pipelines.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def _files_text(run: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(run.rglob("*")) if p.is_file())


def test_run_review_in_another_process_and_resume_through_postgres(
    server, tmp_path, tiny_lm_dir, capsys, monkeypatch, no_pg_env
):
    import psycopg

    edits_file = write_jsonl(tmp_path / "edits.jsonl", _edits())
    run = tmp_path / "run"
    args = ["agents", "run", str(edits_file), "--run", str(run), "--model", str(tiny_lm_dir)]
    args += ["--max-facts", "1", "--max-rounds", "1", "--quiet"]
    assert main([*args, "--checkpointer", server.url()]) == 0
    out, err = capsys.readouterr()
    assert "Waiting for your review" in out and "PGPASSWORD" in err  # the note on the password
    assert PASSWORD not in out + err

    # the state is in the database, under the thread named in the run directory
    assert not (run / "agents.sqlite").exists()
    thread = (run / "agents.thread").read_text().strip()
    with psycopg.connect(server.url()) as conn:
        rows = conn.execute("select count(*) from checkpoints where thread_id = %s", [thread])
        assert rows.fetchone()[0] > 0
    saved = yaml.safe_load((run / "config.yaml").read_text())["agents"]["checkpointer"]
    assert saved == server.url(password=None)
    assert PASSWORD not in _files_text(run)

    # a review without the password: the server refuses, the message says what to do
    ids = sorted(p.id for p in read_jsonl(run / "prompts" / "prompts.jsonl", DensePrompt))
    assert main(["review", str(run), "reject", ids[0], "--reason", "no"]) == 2
    err = capsys.readouterr().err
    assert f"postgres@127.0.0.1:{server.port}/postgres" in err and "PGPASSWORD" in err

    # with PGPASSWORD, a new process finds the database from config.yaml alone
    env = {**os.environ, "PGPASSWORD": PASSWORD, "OMP_NUM_THREADS": "1"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    done = _skedit("review", str(run), "approve", "--all", env=env)
    assert done.returncode == 0, done.stderr
    assert "Review complete" in done.stdout, done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    final = read_jsonl(run / "prompts" / "prompts.jsonl", DensePrompt)
    assert sorted(p.id for p in final) == ids and {p.status for p in final} == {"approved"}

    # running it again without --checkpointer resumes the same thread: nothing left to do
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert main(args) == 0
    assert "Done." in capsys.readouterr().out
    assert not (run / "agents.sqlite").exists()
    assert (run / "agents.thread").read_text().strip() == thread


def test_run_directories_sharing_a_database_keep_their_own_threads(
    server, tmp_path, tiny_lm_dir, monkeypatch, no_pg_env
):
    from skedit.agents.workflow import run_agents, run_status, submit_review

    config = AgentsConfig(max_facts=1, max_rounds=1, checkpointer=server.url())
    a, b = tmp_path / "a", tmp_path / "b"
    for run in (a, b):  # the same batch twice
        status = run_agents(_edits(), run, model_path=tiny_lm_dir, config=config, progress=False)
        assert status == "awaiting_review"
    assert (a / "agents.thread").read_text() != (b / "agents.thread").read_text()
    assert submit_review(a, {"approve_all": True}, config=config, progress=False) == "done"
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # run_status reads the settings from config.yaml
    assert (run_status(a), run_status(b)) == ("done", "awaiting_review")


def test_unreachable_database_is_a_clear_error_without_the_password(
    tmp_path, tiny_lm_dir, capsys, no_pg_env
):
    pytest.importorskip(
        "psycopg", reason='needs the postgres extra: pip install "skedit[postgres]"'
    )
    pytest.importorskip("langgraph.checkpoint.postgres", reason="needs the postgres extra")
    edits_file = write_jsonl(tmp_path / "edits.jsonl", _edits())
    port = _free_port()  # nothing listens there
    url = f"postgresql://skedit:{PASSWORD}@127.0.0.1:{port}/skedit"
    args = ["agents", "run", str(edits_file), "--run", str(tmp_path / "run")]
    args += ["--model", str(tiny_lm_dir), "--quiet", "--checkpointer", url]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert f"skedit@127.0.0.1:{port}/skedit" in err and "Connection refused" in err
    assert "hint:" in err and "Traceback" not in out + err and PASSWORD not in out + err


def test_without_the_postgres_extra_the_error_says_what_to_install(
    tmp_path, tiny_lm_dir, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "langgraph.checkpoint.postgres", None)  # import fails
    edits_file = write_jsonl(tmp_path / "edits.jsonl", _edits())
    args = ["agents", "run", str(edits_file), "--run", str(tmp_path / "run")]
    args += ["--model", str(tiny_lm_dir), "--quiet", "--checkpointer", "postgresql://u@h/db"]
    assert main(args) == 2
    assert 'pip install "skedit[postgres]"' in capsys.readouterr().err


def test_the_password_is_kept_out_of_every_saved_or_shown_setting():
    from skedit.pipelines.run.config import dump_config, parse_config
    from skedit.prompts.errors import SkeditError

    url = f"postgresql://bob:{PASSWORD}@db.example:6543/edits?sslmode=require"
    config = AgentsConfig(checkpointer=url)
    assert config.checkpointer == "postgresql://bob@db.example:6543/edits?sslmode=require"
    assert config.checkpointer_password == PASSWORD  # still used to connect
    assert PASSWORD not in repr(config) + str(config.to_dict())
    run_config = parse_config({"agents": {"checkpointer": url}})
    assert PASSWORD not in dump_config(run_config)
    query = AgentsConfig(checkpointer=f"postgres://bob@db.example/edits?password={PASSWORD}")
    assert query.checkpointer == "postgres://bob@db.example/edits"
    with pytest.raises(SkeditError, match="not a PostgreSQL URL") as err:
        AgentsConfig(checkpointer=f"mysql://bob:{PASSWORD}@db.example/edits")
    assert PASSWORD not in str(err.value)
