"""An OpenAI-compatible server running a shipped GGUF model on CPU: llama.cpp's, through
``llama-cpp-python[server]`` (``pip install -e ".[server]"`` builds it from source).

``skedit model serve NAME`` runs one in the foreground; :class:`LlamaServer` starts one as a
child process on a loopback port and stops it (tests, ``skedit bench backends``). The agents
then talk to it as to any endpoint: ``--backend openai --base-url URL --llm-model NAME``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from skedit.prompts.errors import SkeditError

# what `python -m llama_cpp.server` imports besides llama_cpp itself
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")
INSTALL_HINT = (
    'pip install -e ".[server]" (builds llama.cpp from source: about 5 min on 2 cores, once), '
    "or point --base-url at a server you run (Ollama, vLLM, llama.cpp)"
)


def server_missing() -> list[str]:
    """The modules the server needs that are not installed (empty: it can start)."""
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` on ``host:port`` with one GGUF model, as a child process.

    The model is served under ``alias`` (what ``--llm-model`` names). Use as a context manager,
    or :meth:`start` / :meth:`stop`; the server's own output goes to ``log``.
    """

    def __init__(
        self,
        gguf: str | os.PathLike,
        *,
        alias: str,
        host: str = "127.0.0.1",
        port: int = 0,
        n_ctx: int = 4096,
        threads: int | None = None,
        log: str | os.PathLike | None = None,
    ) -> None:
        self.gguf = Path(gguf)
        self.alias = alias
        self.host = host
        self.port = port or free_port(host)
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.log = Path(log) if log else None  # None: the server writes to this terminal
        self.proc: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf),
            "--model_alias",
            self.alias,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
            "--verbose",
            "False",  # llama.cpp's load log is 2000 lines; requests are still logged
        ]

    def start(self, timeout: float = 180.0) -> str:
        """Start the server and wait until it lists its model; returns the base URL."""
        if self.proc is not None and self.proc.poll() is None:
            return self.url  # already running
        missing = server_missing()
        if missing:
            raise SkeditError(
                f"the llama.cpp server is not installed (missing: {', '.join(missing)})",
                hint=INSTALL_HINT,
            )
        if not self.gguf.is_file():
            raise SkeditError("no such GGUF model file", file=str(self.gguf))
        if self.ready():
            raise SkeditError(
                f"a server already answers on {self.url}",
                hint="stop it, or choose another --port",
            )
        t0 = time.perf_counter()
        out = open(self.log, "ab") if self.log else None  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if out is not None:
                out.close()  # the child has its own handle
        try:  # its own session: a Ctrl-C here must stop it, or it keeps the port
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise SkeditError(
                        f"the llama.cpp server exited with code {self.proc.returncode} while "
                        f"starting{self._tail()}",
                        file=str(self.gguf),
                        hint="check the GGUF file and the port"
                        + (f"; the server log is {self.log}" if self.log else ""),
                    )
                if self.ready():
                    self.startup_seconds = round(time.perf_counter() - t0, 2)
                    return self.url
                time.sleep(0.25)
            raise SkeditError(
                f"the llama.cpp server did not answer on {self.url} within {timeout:g} s"
                f"{self._tail()}",
                hint="a slow disk or a large model: raise the timeout",
            )
        except BaseException:
            self.stop()
            raise

    def ready(self) -> bool:
        """The server lists ``alias`` among its models (direct connection, no proxy)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.url}/models", timeout=2) as resp:
                data = json.load(resp).get("data", [])
            return any(isinstance(m, dict) and m.get("id") == self.alias for m in data)
        except Exception:  # not up yet, or not an OpenAI-compatible server
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def _tail(self) -> str:
        if not self.log or not self.log.is_file():
            return ""
        lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return (": " + " | ".join(lines[-3:])[-400:]) if lines else ""

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_model(name: str, *, cache_dir: str | None = None, **kw) -> LlamaServer:
    """A :class:`LlamaServer` for a shipped model (``smollm2-135m``, ``gemma3-270m``): its GGUF
    file is fetched into the cache on first use, served under the model's name."""
    from skedit.sft import hub

    return LlamaServer(hub.fetch_gguf(name, cache_dir), alias=name, **kw)
