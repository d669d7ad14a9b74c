"""The launch plumbing of data-parallel training: checks, the accelerate command, rank logs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from skedit.prompts.errors import SkeditError
from skedit.sft.config import TrainConfig
from skedit.sft.launch import (
    accelerate_command,
    check_accelerate_config,
    check_data_parallel,
    launch_env,
    per_device_batch,
    resolve_launch,
)


def test_resolve_launch_picks_accelerate_for_several_processes_or_a_config():
    assert resolve_launch(None, None, None) == ("inprocess", 1, None)
    assert resolve_launch(None, 2, None) == ("accelerate", 2, None)
    assert resolve_launch(None, None, "zero3") == ("accelerate", 1, "zero3")
    assert resolve_launch("accelerate", 1, None) == ("accelerate", 1, None)


@pytest.mark.parametrize(
    "launcher, processes, config, message",
    [
        (None, 0, None, "at least 1"),
        (None, -2, None, "at least 1"),
        (None, True, None, "at least 1"),
        ("inprocess", 2, None, "cannot train in this one process"),
        ("inprocess", 1, "zero3", "only by the accelerate launcher"),
        ("torchrun", 1, None, "unknown launcher"),
    ],
)
def test_resolve_launch_errors(launcher, processes, config, message):
    with pytest.raises(SkeditError, match=message):
        resolve_launch(launcher, processes, config)


def test_the_global_batch_splits_evenly_across_processes():
    check_data_parallel(TrainConfig(batch_size=32), 2)
    check_data_parallel(TrainConfig(batch_size=5), 1)
    with pytest.raises(SkeditError, match="multiple of 3"):
        check_data_parallel(TrainConfig(batch_size=32), 3)
    assert per_device_batch(32, 1) == 32 and per_device_batch(32, 2) == 16
    with pytest.raises(SkeditError):
        per_device_batch(5, 2)


def test_two_cpu_processes_go_through_torchrun_with_their_own_port_and_logs(tmp_path):
    cmd = accelerate_command(tmp_path, processes=2, cpu=True, threads=1, resume=True)
    # accelerate's --cpu starts ONE process whatever --num_processes says: --multi_gpu starts
    # the ranks (torchrun), and they pick the CPU and gloo (launch_env hides the GPUs)
    assert "--multi_gpu" in cmd and "--cpu" not in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert int(cmd[cmd.index("--main_process_port") + 1]) > 0
    assert cmd[cmd.index("--num_cpu_threads_per_process") + 1] == "1"
    assert cmd[-4:] == [str(tmp_path), "--log-dir", str(tmp_path / "logs"), "--resume"]
    env = launch_env(cpu=True, threads=1)
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == "1"


def test_one_cpu_process_and_named_configs(tmp_path):
    one = accelerate_command(tmp_path, cpu=True)
    assert "--cpu" in one and one[one.index("--num_processes") + 1] == "1"
    assert "--main_process_port" not in one
    zero3 = accelerate_command(tmp_path, accelerate_config="zero3", processes=4, cpu=False)
    assert zero3[zero3.index("--config_file") + 1].endswith("zero3.yaml")
    assert zero3[zero3.index("--num_processes") + 1] == "4"
    with pytest.raises(SkeditError, match="unknown accelerate config"):
        accelerate_command(tmp_path, accelerate_config="zero9")


def test_accelerate_configs_are_parsed_by_accelerate(tmp_path):
    assert check_accelerate_config("zero3")["engine"] == "DeepSpeed ZeRO-3"
    assert check_accelerate_config("zero1")["engine"] == "DeepSpeed ZeRO-1"
    assert check_accelerate_config("fsdp")["engine"] == "FSDP2"
    assert check_accelerate_config("multi_gpu")["engine"] == "DDP"
    # a relative file is found in the folder of the recipe that names it
    (tmp_path / "mine.yaml").write_text("distributed_type: MULTI_GPU\nnum_processes: 2\n")
    assert check_accelerate_config("mine.yaml", base=tmp_path)["num_processes"] == 2
    (tmp_path / "bad.yaml").write_text("distributed_type: MULTI_GPU\nnum_procs: 2\n")
    with pytest.raises(SkeditError, match="accelerate cannot read"):
        check_accelerate_config("bad.yaml", base=tmp_path)
    (tmp_path / "ds.yaml").write_text(
        "distributed_type: DEEPSPEED\ndeepspeed_config:\n  deepspeed_config_file: ds.json\n"
    )
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 2}}')
    assert check_accelerate_config("ds.yaml", base=tmp_path)["engine"] == "DeepSpeed ZeRO-2"
    (tmp_path / "ds.json").write_text("{not json")
    with pytest.raises(SkeditError, match="DeepSpeed config"):
        check_accelerate_config("ds.yaml", base=tmp_path)


@pytest.mark.parametrize("rank, on_console", [("0", True), ("1", False)])
def test_every_rank_logs_to_its_file_and_rank_zero_to_the_console(tmp_path, rank, on_console):
    script = textwrap.dedent(
        f"""
        import os, sys
        from skedit.sft.launch import tee_to_log
        tee_to_log({str(tmp_path)!r})
        print("from python stdout")
        print("from python stderr", file=sys.stderr)
        os.write(2, b"from fd 2\\n")
        """
    )
    env = dict(os.environ, RANK=rank, WORLD_SIZE="2")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / f"rank{rank}.log").read_text()
    assert f"rank {rank} of 2" in log
    for line in ("from python stdout", "from python stderr", "from fd 2"):
        assert line in log
        assert (line in proc.stdout + proc.stderr) == on_console


def test_build_trainer_splits_the_batch_across_ranks(tiny_lm_dir, tmp_path, monkeypatch):
    from skedit.prompts.schema import TransferExample
    from skedit.sft import launch
    from skedit.sft.modelops import load_model
    from skedit.sft.train import build_trainer

    rows = [
        TransferExample(
            prompt="alice was born in", completion=" rome", teacher_prompt="x", kind="edit"
        )
    ] * 4
    model, tok = load_model(tiny_lm_dir)
    monkeypatch.setattr(launch, "world_size", lambda: 2)
    trainer, _ = build_trainer(model, tok, rows, TrainConfig(method="sft", batch_size=8), tmp_path)
    assert trainer.args.per_device_train_batch_size == 4


def test_a_relaunch_appends_its_header_on_a_line_of_its_own(tmp_path):
    script = (
        "import sys\nfrom skedit.sft.launch import tee_to_log\n"
        f"tee_to_log({str(tmp_path)!r})\nprint(' 13%|#  | 52/400', end='', file=sys.stderr)\n"
    )
    env = dict(os.environ, RANK="0", WORLD_SIZE="2")
    for _ in range(2):  # e.g. killed with a progress bar half drawn, then resumed
        subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    lines = (tmp_path / "rank0.log").read_text().splitlines()
    assert [line.startswith("--- ") for line in lines] == [True, False, True, False]
