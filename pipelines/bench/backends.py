"""``skedit bench backends``: who writes the prompts and probes, measured end to end on a real model.

    skedit bench backends --model smollm2-135m --llm smollm2-135m \\
        --facts known_facts.json --edits 20 --out backends.json

The same counterfactual edits (built as ``skedit bench real`` builds them, paraphrase and
neighbourhood prompts held out) go through the whole ``skedit run`` once per agent backend:

- ``rules``: templates write the prompts and the probes (offline);
- ``openai``: an LLM writes the prompts, the paraphrases and the implication questions;
- ``mixed``: rules write the prompts, the LLM the paraphrases rules lack and the implication
  questions.

The LLM is a real OpenAI-compatible server: llama.cpp's, started here on a loopback port with
a shipped GGUF model (``--llm NAME``), or any running one (``--base-url URL --llm-model NAME``).
Per mode: probes written per edit, the share of LLM-written probes that are well-formed, the
critic's pass rate, LLM calls and their latency, seconds per edit (agents and whole run), and
held-out paraphrase and neighbourhood locality after training. ``--readme FILE`` replaces the
table between ``<!-- bench-backends -->`` and ``<!-- /bench-backends -->``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

from skedit.prompts.io import atomic_write_json, read_jsonl
from skedit.prompts.runfiles import LLM_CALLS, PROBES, PROMPTS
from skedit.prompts.schema import DensePrompt, Probe

MODES = ("rules", "openai", "mixed")
TEMPLATES = ("writer", "questioner", "critic")
MARKER = "bench-backends"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m", help="the model edited (teacher/student)")
    p.add_argument("--facts", required=True, help="a known-facts JSON file (ROME's layout)")
    p.add_argument("--edits", type=int, default=20, help="counterfactual edits in the batch")
    p.add_argument("--modes", default=",".join(MODES), help="agent backends to compare")
    p.add_argument("--llm", default="smollm2-135m", help="shipped model the server runs")
    p.add_argument("--base-url", help="use this running server instead of starting one")
    p.add_argument("--llm-model", help="model name at --base-url (default: --llm)")
    p.add_argument("--llm-timeout", type=float, default=120.0, help="seconds per LLM request")
    p.add_argument("--llm-threads", type=int, default=0, help="server threads (0: half the cores)")
    p.add_argument("--out", default="bench_backends.json", help="JSON result file")
    p.add_argument("--work", help="folder for the edits and the runs (default: next to --out)")
    p.add_argument("--recipe", help="recipe (default: the model's, else its family's)")
    p.add_argument("--readme", help="splice the table into this file between its markers")
    p.add_argument("--seed", type=int, default=0)


def probe_counts(run_dir: Path, n_edits: int) -> dict[str, float]:
    """Probes per edit the agent stage wrote, by kind."""
    counts: dict[str, int] = {}
    for p in read_jsonl(run_dir / PROBES, Probe):
        counts[p.kind] = counts.get(p.kind, 0) + 1
    return {k: round(v / max(n_edits, 1), 2) for k, v in sorted(counts.items())}


def critic_summary(run_dir: Path) -> dict[str, float | int]:
    """Prompts written, and the share the critic passed in their last round."""
    prompts = read_jsonl(run_dir / PROMPTS, DensePrompt)
    passed = sum(1 for p in prompts if p.critiques and p.critiques[-1].passed)
    return {
        "prompts": len(prompts),
        "passed": passed,
        "pass_rate": round(passed / len(prompts), 3) if prompts else 0.0,
        "rounds": max((len(p.critiques) for p in prompts), default=0),
    }


def llm_summary(run_dir: Path) -> dict:
    """LLM calls of the run (``llm_calls.jsonl``): count, outcomes, latency, probe counts."""
    path = run_dir / LLM_CALLS
    rows = (
        [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]
        if (path.is_file())
        else []
    )
    calls = [r for r in rows if r.get("event") == "call"]
    questions = [r for r in rows if r.get("event") == "questions"]
    fallbacks = [r for r in rows if r.get("event") == "fallback"]
    secs = sorted(float(r["seconds"]) for r in calls)
    out: dict = {
        "calls": len(calls),
        "ok": sum(1 for r in calls if r["outcome"] == "ok"),
        "seconds": round(sum(secs), 1),
        "median_seconds": secs[len(secs) // 2] if secs else None,
        "by_template": {},
        # requests that never got a usable answer: the rules' text stood in
        "fallbacks": {t: sum(1 for r in fallbacks if r["template"] == t) for t in TEMPLATES},
    }
    for r in calls:
        t = out["by_template"].setdefault(r["template"], {"calls": 0, "ok": 0})
        t["calls"] += 1
        t["ok"] += r["outcome"] == "ok"
    if questions:
        q = questions[-1]  # counts are cumulative over the run
        written = q["rephrases_written"] + q["implications_written"]
        kept = q["rephrases_kept"] + q["implications_kept"]
        out["questions"] = q
        out["well_formed"] = round(kept / written, 3) if written else None
    if calls:
        out["server"] = calls[-1].get("server")
        out["model"] = calls[-1].get("served_model") or calls[-1].get("model")
    return out


def mode_row(mode: str, work: Path, run: dict, metrics: dict, n_edits: int) -> dict:
    from skedit.pipelines.bench.real import _score

    run_dir = work / mode / "run"
    m = metrics["methods"]["skedit"]
    agents_s = float(run["stages"].get("agents", {}).get("seconds", 0.0))
    llm = llm_summary(run_dir)
    return {
        "mode": mode,
        "probes_per_edit": probe_counts(run_dir, n_edits),
        "llm": llm,
        "critic": critic_summary(run_dir),
        "agents_seconds_per_edit": round(agents_s / max(n_edits, 1), 2),
        "seconds_per_edit": round(run["seconds"] / max(n_edits, 1), 2),
        "edit": _score(m, "edit_success"),
        "paraphrase": _score(m, "paraphrase"),
        "neighbourhood": _score(m, "locality"),
    }


def render_table(rows: list[dict]) -> str:
    def cell(x: dict) -> str:
        return "–" if x["mean"] is None else f"{x['mean']:.2f} ({x['n']})"

    head = (
        "| mode | probes/edit (rephrase, multi-hop, unrelated) | LLM calls (ok) | rules stood "
        "in (writer, questioner, critic) | LLM probes well-formed | critic pass | agents s/edit "
        "| run s/edit | edit | paraphrase | neighbourhood |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, llm, c = r["probes_per_edit"], r["llm"], r["critic"]
        probes = (
            f"{p.get('rephrase', 0):.1f}, {p.get('portability', 0):.1f}, {p.get('locality', 0):.1f}"
        )
        calls = f"{llm['calls']} ({llm['ok']})" if llm["calls"] else "0"
        fb = llm.get("fallbacks") or {}
        stood_in = ", ".join(str(fb.get(t, 0)) for t in TEMPLATES) if llm["calls"] else "–"
        wf = llm.get("well_formed")
        q = llm.get("questions") or {}
        written = q.get("rephrases_written", 0) + q.get("implications_written", 0)
        well = "–" if wf is None else f"{wf:.2f} of {written}"
        lines.append(
            f"| {r['mode']} | {probes} | {calls} | {stood_in} | {well} | "
            f"{c['passed']}/{c['prompts']} | "
            f"{r['agents_seconds_per_edit']:.1f} | {r['seconds_per_edit']:.1f} | "
            f"{cell(r['edit'])} | {cell(r['paraphrase'])} | {cell(r['neighbourhood'])} |"
        )
    return "\n".join(lines)


def command_line(args: argparse.Namespace) -> str:
    parts = ["skedit bench backends", f"--model {args.model}", f"--llm {args.llm}"]
    parts += [f"--facts {args.facts}", f"--edits {args.edits}", f"--out {args.out}"]
    if args.modes != ",".join(MODES):
        parts.append(f"--modes {args.modes}")
    for flag, value in (
        ("--base-url", args.base_url),
        ("--llm-model", args.llm_model),
        ("--llm-threads", args.llm_threads),
        ("--recipe", args.recipe),
        ("--seed", args.seed),
    ):
        if value:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from skedit.pipelines.bench.real import (
        build_edits,
        evaluate_methods,
        names_in,
        prepare,
        skedit_run,
        splice_readme,
    )
    from skedit.pipelines.serve import serve_model

    modes = names_in(args.modes, MODES, "--modes")
    out, work, model_path, recipe = prepare(args)
    t0 = time.perf_counter()
    data = build_edits(model_path, Path(args.facts), args.edits, work, args.seed)
    print(
        f"{args.model}: {data['edits']} counterfactual edits in {work / 'edits.json'}", flush=True
    )
    needs_llm = any(m != "rules" for m in modes)
    server = None
    with contextlib.ExitStack() as stack:
        base_url, llm_model = args.base_url, args.llm_model or args.llm
        if needs_llm and not base_url:
            # half the cores: it shares them with the teacher, and llama.cpp's threads spin-wait
            # on each other when one of them is descheduled (0.5 token/s instead of 100)
            threads = args.llm_threads or max(1, (os.cpu_count() or 2) // 2)
            server = serve_model(args.llm, log=work / "server.log", threads=threads)
            stack.enter_context(server)
            base_url = server.url
            print(f"llama.cpp server: {args.llm} at {base_url} ({server.startup_seconds} s)")
        rows, runs = [], {}
        for mode in modes:
            mode_dir = work / mode
            mode_dir.mkdir(exist_ok=True)
            for name in ("edits.json", "heldout.json"):  # this batch's, even in an old --work
                target, data_bytes = mode_dir / name, (work / name).read_bytes()
                if not target.exists() or target.read_bytes() != data_bytes:
                    target.write_bytes(data_bytes)
            agents = {"backend": mode}
            if mode != "rules":
                agents |= {
                    "base_url": base_url,
                    "llm_model": llm_model,
                    "llm_timeout": args.llm_timeout,
                }
            print(f"[{mode}] skedit run …", flush=True)
            runs[mode] = skedit_run(model_path, recipe, mode_dir, args.seed, agents=agents)
            metrics, _, kept = evaluate_methods(
                mode_dir / "run", ["skedit"], mode_dir / "heldout.json", {}, args.seed
            )
            rows.append(mode_row(mode, work, runs[mode], metrics, data["edits"]))
            print(render_table(rows[-1:]), flush=True)
    table = render_table(rows)
    result = {
        "command": command_line(args),
        "model": args.model,
        "llm": {
            "name": llm_model,
            "base_url": base_url,
            "server": "llama-cpp-python (llama.cpp) on this machine" if server else "given",
            "startup_seconds": server.startup_seconds if server else None,
        },
        "recipe": recipe,
        "data": data,
        "rows": rows,
        "runs": runs,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "note": "paraphrase and neighbourhood are held out (never written by any mode); a probe "
        "counts only where the base model answered it as the fact says before the edit",
    }
    atomic_write_json(out, result)
    print(table)
    print(f"\nwritten: {out}")
    if args.readme:
        text = f"`{result['command']}` ({data['edits']} edits; LLM: {llm_model}):\n\n{table}"
        splice_readme(Path(args.readme), MARKER, text)
    return 0
