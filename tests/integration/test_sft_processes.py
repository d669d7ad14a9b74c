"""`skedit sft --processes N`: data-parallel training under accelerate. Fast: the settings and
their errors; slow: two CPU processes (gloo) against one on the world benchmark, and a
two-process job killed and resumed; gpu: the GPU recipe on the GPUs present."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from skedit.pipelines.cli import main
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import write_jsonl
from skedit.prompts.schema import DensePrompt, Probe

SKEDIT = [sys.executable, "-m", "skedit.pipelines.cli"]


def make_run(run: Path, model: Path | str, **launch) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    cfg = {"model": str(model), "training": {"max_steps": 2, "batch_size": 4, "threads": 1}}
    if launch:
        cfg["launch"] = launch
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    probes = [
        Probe(prompt="alice was born in", answers=["rome"], kind="edit", edit_id="e1"),
        Probe(prompt="where was alice born ?", answers=["rome"], kind="rephrase", edit_id="e1"),
        Probe(
            prompt="the country of alice is", answers=["italy"], kind="portability", edit_id="e1"
        ),
        Probe(prompt="bob lives in", answers=["london"], kind="locality", edit_id="e1"),
    ]
    write_jsonl(run / "probes.jsonl", probes)
    prompt = DensePrompt(edit_ids=["e1"], text="alice was born in rome .", status="approved")
    write_jsonl(run / "prompts" / "prompts.jsonl", [prompt])
    return run


def _plan(capsys, *argv) -> dict:
    assert main(["sft", *argv, "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["launch"]


# --- fast: the settings and their errors --------------------------------------------------


def test_processes_flag_config_and_recipe_reach_the_launch_plan(tiny_lm_dir, tmp_path, capsys):
    run = make_run(tmp_path / "run", tiny_lm_dir)
    assert _plan(capsys, str(run)) == {
        "launcher": "inprocess",
        "processes": 1,
        "batch_per_process": 4,
        "global_batch": 4,
    }
    two = _plan(capsys, str(run), "--processes", "2")
    assert two["launcher"] == "accelerate" and two["batch_per_process"] == 2
    assert "--multi_gpu" in two["command"] and two["global_batch"] == 4
    # the run's config.yaml says it (launch: processes), the command line overrides it
    conf = make_run(tmp_path / "conf", tiny_lm_dir, processes=2)
    assert _plan(capsys, str(conf))["processes"] == 2
    assert _plan(capsys, str(conf), "--processes", "1")["launcher"] == "inprocess"
    assert _plan(capsys, str(conf), "--launcher", "inprocess")["processes"] == 1
    # a recipe's launch: section, with a relative accelerate config found beside it
    (tmp_path / "ddp.yaml").write_text("distributed_type: MULTI_GPU\nnum_processes: 2\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"launch": {"accelerate_config": "ddp.yaml"}}))
    plan = _plan(capsys, str(run), "--recipe", str(recipe), "--processes", "2")
    assert plan["accelerate_config"]["engine"] == "DDP"
    assert plan["accelerate_config"]["file"] == str(tmp_path / "ddp.yaml")


@pytest.mark.parametrize(
    "argv, launch, message",
    [
        (["--processes", "0"], {}, "at least 1"),
        (["--processes", "2", "--launcher", "inprocess"], {}, "cannot train in this one"),
        (["--processes", "3"], {}, "does not split evenly across 3"),
        (["--launcher", "inprocess", "--accelerate-config", "zero3"], {}, "accelerate launcher"),
        (["--accelerate-config", "zero9"], {}, "unknown accelerate config"),
        ([], {"processes": "two"}, "launch.processes"),
        ([], {"procs": 2}, "procs"),
    ],
)
def test_bad_launch_settings_fail_before_any_work(tmp_path, capsys, argv, launch, message):
    run = make_run(tmp_path / "run", "unused-model", **launch)
    assert main(["sft", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (run / "transfer.jsonl").exists() and not (run / "sft_job.json").exists()


def test_recipe_check_parses_every_shipped_recipe_and_the_configs_they_name(tmp_path, capsys):
    assert main(["recipe", "check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(r["ok"] for r in out.values())
    gpu = [n for n in out if n.endswith("-gpu")]
    assert gpu and all(out[n]["launcher"] == "accelerate" for n in gpu)
    assert out["llama-7b-gpu"]["engine"] == "DDP"
    assert out["llama-7b-gpu"]["accelerate_config"].endswith("multi_gpu.yaml")
    # a recipe naming a config that is not there, or one accelerate cannot read
    (tmp_path / "broken.yaml").write_text("distributed_type: MULTI_GPU\nnum_gpus: 2\n")
    for name, acc in (("missing", "nowhere.yaml"), ("unreadable", "broken.yaml")):
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump({"launch": {"accelerate_config": acc}})
        )
    assert main(["recipe", "check", str(tmp_path / "missing.yaml")]) == 2
    assert "unknown accelerate config 'nowhere.yaml'" in capsys.readouterr().err
    assert main(["recipe", "check", str(tmp_path / "unreadable.yaml")]) == 2
    assert "num_gpus" in capsys.readouterr().err
    assert main(["recipe", "list"]) == 0
    assert "llama-7b-gpu" in capsys.readouterr().out.split()


# --- slow: two CPU processes on gloo -------------------------------------------------------


def _sft(run: Path, *argv: str, timeout: int = 900) -> dict:
    proc = subprocess.run(
        [*SKEDIT, "sft", str(run), *argv, "--json"], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_cpu_processes_write_one_model_and_a_log_per_rank(tiny_lm_dir, tmp_path):
    one = make_run(tmp_path / "one", tiny_lm_dir)
    two = make_run(tmp_path / "two", tiny_lm_dir)
    a = _sft(one)
    b = _sft(two, "--processes", "2")
    assert b["launcher"] == "accelerate" and b["processes"] == 2 and b["steps"] == a["steps"] == 2
    result = json.loads((two / "model" / "train_result.json").read_text())
    assert result["processes"] == 2 and result["model_dir"] == str(two / "model")
    logs = {p.name: p.read_text() for p in (two / "logs").glob("rank*.log")}
    assert set(logs) == {"rank0.log", "rank1.log"}
    assert "rank 1 of 2" in logs["rank1.log"]
    assert '"model_dir": null' in logs["rank1.log"]  # rank 1 trained and wrote nothing
    # 4 rows, batch 4: the two ranks take 2 each, so the first step's loss (the mean over the
    # ranks) is one process's up to float noise
    loss = [
        json.loads((run / "model" / "training_log.json").read_text())[0]["loss"]
        for run in (one, two)
    ]
    assert loss[1] == pytest.approx(loss[0], rel=1e-3)


@pytest.fixture(scope="module")
def small_world():
    """The default world (small, seed 0): its shipped model, copied into the cache."""
    from skedit.pipelines.world.build import build_world

    return build_world(size="small", progress=False)


def _world_run(tmp_path: Path, world) -> Path:
    """`skedit run` on the first 20 benchmark edits (dev) of the default world, one process,
    with the world-cpu recipe's training (checkpoints every 10 steps)."""
    from skedit.pipelines.run.recipes import load_recipe

    recipe = load_recipe("world-cpu")
    training = {**recipe["training"], "save_steps": 10}
    cfg = {
        "model": str(world.model_dir),
        "agents": recipe.get("agents", {}),
        "training": training,
        "evaluation": {"baselines": ["base"]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = Path(world.benchmark["dev"]).read_text().splitlines()[:20]
    edits = tmp_path / "edits.jsonl"
    edits.write_text("\n".join(lines) + "\n")
    one = tmp_path / "one"
    cmd = [*SKEDIT, "run", str(edits), "--run", str(one), "--config", str(tmp_path / "config.yaml")]
    subprocess.run([*cmd, "--auto-approve", "--json"], check=True, capture_output=True)
    return one


def _copy_untrained(src: Path, dst: Path) -> Path:
    """The run before its train stage: prompts, probes, transfer set, config."""
    skip = shutil.ignore_patterns("model", "logs", "metrics.json", "report.*", "*.lock")
    shutil.copytree(src, dst, ignore=skip)
    return dst


def _skedit_metrics(run: Path) -> dict:
    subprocess.run(
        [*SKEDIT, "eval", str(run), "--baselines", "base", "--json"],
        check=True,
        capture_output=True,
    )
    methods = json.loads((run / "metrics.json").read_text())["methods"]
    means = {
        k: v["mean"]
        for k, v in methods["skedit"].items()
        if isinstance(v, dict) and isinstance(v.get("mean"), int | float)
    }
    if "fluency" in means:  # reported x100 (EasyEdit's scale): compare the entropy itself
        means["fluency"] /= 100
    return means


def _kill_group_after_checkpoint(cmd: list[str], run: Path) -> None:
    """Start ``cmd`` in its own process group and SIGKILL the whole group (launcher and every
    rank) once a complete checkpoint exists."""
    from skedit.sft.train import last_checkpoint

    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            if last_checkpoint(run / "model") is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            if proc.poll() is not None:
                pytest.fail("training ended before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint was written")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def world_runs(tmp_path_factory, small_world):
    """One process (`skedit run`), then two processes on a copy of it (same transfer set)."""
    tmp = tmp_path_factory.mktemp("dp-world")
    one = _world_run(tmp, small_world)
    two = _copy_untrained(one, tmp / "two")
    start = time.perf_counter()
    out = _sft(two, "--processes", "2")
    seconds = time.perf_counter() - start
    return {
        "tmp": tmp,
        "one": one,
        "two": two,
        "out": out,
        "seconds": seconds,
        "one_metrics": _skedit_metrics(one),  # `skedit eval`, as for the others
    }


@pytest.mark.slow
def test_two_cpu_processes_match_one_on_the_world_benchmark(world_runs):
    one, two, out = world_runs["one"], world_runs["two"], world_runs["out"]
    assert out["processes"] == 2 and out["transfer_reused"] is True
    steps = json.loads((one / "model" / "train_result.json").read_text())["steps"]
    assert out["steps"] == steps
    a, b = world_runs["one_metrics"], _skedit_metrics(two)
    assert {"edit_success", "paraphrase", "locality"} <= set(a) and set(a) == set(b)
    print(f"\n1 process: {a}\n2 processes ({world_runs['seconds']:.0f} s): {b}")
    assert a["edit_success"] >= 0.9  # the default world learns the edits: a real comparison
    for metric in a:
        assert b[metric] == pytest.approx(a[metric], abs=0.05), metric


PID = re.compile(r"^--- \S+ rank \d+ of \d+, pid (\d+)", re.M)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_two_cpu_processes_killed_mid_training_resume_from_the_checkpoint(world_runs):
    one = world_runs["one"]
    run = _copy_untrained(one, world_runs["tmp"] / "killed")
    cmd = [*SKEDIT, "sft", str(run), "--processes", "2"]
    _kill_group_after_checkpoint(cmd, run)
    # no rank lives on (torchrun starts each in a session of its own: they die with it)
    pids = [int(p) for f in (run / "logs").glob("rank*.log") for p in PID.findall(f.read_text())]
    assert len(pids) == 2
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
    assert not (run / "model" / "model.safetensors").exists()
    from skedit.sft.train import last_checkpoint

    state = json.loads((Path(last_checkpoint(run / "model")) / "trainer_state.json").read_text())
    killed_at = state["global_step"]
    out = _sft(run, "--processes", "2")  # the same command again
    assert out["resumed_from"] == f"checkpoint-{killed_at}" and killed_at > 0
    steps = json.loads((one / "model" / "train_result.json").read_text())["steps"]
    assert out["steps"] == steps > killed_at
    assert not (run / "model" / "checkpoints").exists()
    rank1 = (run / "logs" / "rank1.log").read_text()
    assert rank1.count("--- ") >= 2 and f"resuming from {run / 'model'}" in rank1
    a, b = world_runs["one_metrics"], _skedit_metrics(run)
    print(f"\nkilled at step {killed_at} of {steps}, resumed: {b}")
    for metric in a:
        assert b[metric] == pytest.approx(a[metric], abs=0.05), metric
    # and the uninterrupted two-process run's scores, up to float noise
    two = _skedit_metrics(world_runs["two"])
    for metric in two:
        assert b[metric] == pytest.approx(two[metric], abs=0.01), metric


# --- gpu: the GPU recipe where GPUs are present --------------------------------------------


@pytest.mark.gpu
def test_gpu_recipe_trains_under_accelerate_on_the_gpus(tiny_lm_dir, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    run = make_run(tmp_path / "run", tiny_lm_dir)
    n = torch.cuda.device_count()
    out = _sft(
        run,
        "--recipe",
        "llama-7b-gpu",
        "--max-steps",
        "4",
        "--processes",
        str(n),
        timeout=1200,
    )
    assert out["launcher"] == "accelerate" and out["processes"] == n and out["steps"] == 4
    assert (run / "model" / "model.safetensors").is_file()
    assert len(list((run / "logs").glob("rank*.log"))) == n


def test_skedit_run_passes_the_launch_section_to_the_train_stage(tmp_path, monkeypatch):
    from skedit.pipelines.run import orchestrate
    from skedit.pipelines.run.config import parse_config
    from skedit.pipelines.run.rundir import RunDir

    seen = {}
    monkeypatch.setattr(orchestrate, "train_stage", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(orchestrate, "train_manifest", lambda *a: {})
    config = parse_config({"launch": {"processes": 2, "accelerate_config": "fsdp"}})
    cfg = config.section("training")
    orchestrate._train_stage(RunDir(tmp_path), [], "m", "m", cfg, config, fresh=False)
    assert seen["processes"] == 2 and seen["accelerate_config"] == "fsdp"
    assert seen["launcher"] is None and seen["config_base"] == str(tmp_path)
    with pytest.raises(SkeditError, match="launch.processes"):
        parse_config({"launch": {"processes": "many"}})
