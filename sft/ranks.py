"""The process side of data-parallel training: which rank this is, how many there are, each
rank's own log file, and ranks that die with their launcher."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from pathlib import Path


def world_size() -> int:
    """Ranks of this launch (torchrun and the DeepSpeed launcher set WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def tee_to_log(log_dir: str | os.PathLike, *, console: bool | None = None) -> Path:
    """Copy everything this process writes to fds 1 and 2 (C++ warnings included) into
    ``log_dir/rank<RANK>.log``, appended; ``console``: keep writing to the console too
    (default: rank 0 only, so the console shows one progress bar)."""
    r = rank()
    console = r == 0 if console is None else console
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"rank{r}.log"
    earlier = path.is_file() and path.stat().st_size > 0  # a killed launch's last line is open
    log = open(path, "ab", buffering=0)  # noqa: SIM115 - closed at exit
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    header = f"--- {stamp} rank {r} of {world_size()}, pid {os.getpid()}: {' '.join(sys.argv[1:])}"
    log.write((("\n" if earlier else "") + header + "\n").encode())
    lock = threading.Lock()
    saved: dict[int, int] = {}
    pumps = []

    def pump(read_fd: int, out_fd: int | None) -> None:
        while data := os.read(read_fd, 65536):
            with lock:
                log.write(data)
            if out_fd is not None:
                try:
                    os.write(out_fd, data)
                except OSError:
                    out_fd = None
        os.close(read_fd)

    sys.stdout.flush()
    sys.stderr.flush()
    for fd in (1, 2):
        saved[fd] = os.dup(fd)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, fd)
        os.close(write_fd)
        t = threading.Thread(target=pump, args=(read_fd, saved[fd] if console else None))
        t.daemon = True
        t.start()
        pumps.append(t)

    def restore() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        for fd, orig in saved.items():
            os.dup2(orig, fd)  # closes the pipe's last write end: the pump sees its end
        for t in pumps:
            t.join(timeout=10)
        log.close()

    atexit.register(restore)
    return path


def die_with_parent() -> None:
    """torchrun starts every rank in a session of its own, so killing the job's process group
    (the launcher) would leave the ranks training on as orphans, one of them writing the model
    later: on Linux a rank is killed when the process that started it dies."""
    if not sys.platform.startswith("linux") or "RANK" not in os.environ:
        return
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)
