import os
import subprocess
import sys

import pytest

from skedit.pipelines.run.rundir import RunDir, hash_inputs
from skedit.prompts.errors import SkeditError


def test_a_second_process_cannot_take_a_live_run_directory(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from skedit.pipelines.run.rundir import RunDir; r=RunDir(sys.argv[1]); "
            "r.acquire(); print('locked', flush=True); time.sleep(30)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SkeditError, match=f"pid {holder.pid}"):
            RunDir(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # its process is gone: the stale lock is taken over
    with RunDir(tmp_path) as run:
        assert run.lock_file.read_text().split()[0] == str(os.getpid())
    assert not (tmp_path / ".skedit.lock").exists()


def test_stage_records_skip_only_unchanged_inputs(tmp_path):
    f = tmp_path / "edits.jsonl"
    f.write_text("a\n")
    run = RunDir(tmp_path / "run")
    h1 = hash_inputs({"lr": 1}, files=[f])
    run.mark("agents", done=True, input_hash=h1)
    run.mark("teacher", done=True, input_hash="x")
    assert run.is_done("agents", h1)
    f.write_text("b\n")
    assert not run.is_done("agents", hash_inputs({"lr": 1}, files=[f]))
    assert hash_inputs({"lr": 2}, files=[f]) != hash_inputs({"lr": 1}, files=[f])
    run.invalidate_from("agents")
    assert run.stages() == {}


def test_files_written_atomically_get_the_mode_a_plain_write_gets(tmp_path):
    import stat

    from skedit.prompts.io import atomic_write_text

    atomic = atomic_write_text(tmp_path / "metrics.json", "{}")
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    # mkstemp alone gives 0600: a colleague or a reviewer's account could not read the run
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
