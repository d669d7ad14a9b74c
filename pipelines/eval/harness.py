"""One evaluation harness for the student, the unedited base, PROMPT and every baseline.

``evaluate_run`` loads a run directory (``runs``), runs every requested method through the
same measurement (``scoring.evaluate_model``, ``fluency``) on the same probes against the
pre-edit reference (``reference``) and returns the ``metrics.json`` object, with the
sequential and retention experiments when asked.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from skedit.pipelines.eval.fluency import generation_fluency, heldout_perplexity
from skedit.pipelines.eval.hooks import EvalHook, HookFactory
from skedit.pipelines.eval.reference import cached_reference
from skedit.pipelines.eval.runs import (
    RunData,
    heldout_texts,
    load_run,
    trained_prompts,
    training_for,
)
from skedit.pipelines.eval.scoring import METRIC_OF_KIND, aggregate, evaluate_model
from skedit.prompts import APPROVED
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Probe

PROTOCOL = {
    "decoding": "greedy, no sampling; the answer is the generation up to the first newline or "
    "sentence end",
    "exact_match": "skedit.prompts.answers.matches: normalised answer equals an alias, or starts "
    "with it at a word boundary",
    "token_accuracy": "EasyEdit-compatible: one teacher-forced pass on prompt + ' ' + target; "
    "fraction of target tokens that are the argmax given the true prefix",
    "edit_success": "edit prompts, target = target_new",
    "paraphrase": "rephrased edit prompts, target = target_new",
    "portability": "multi-hop probes through the edit, target = the probe's answers",
    "locality": "unrelated probes; reference = the PRE-EDIT model's recorded greedy answer "
    "(probe.expected), never the gold answer; token level = fraction of answer positions whose "
    "argmax equals the pre-edit model's argmax on the same teacher-forced input",
    "ci": "95% percentile bootstrap over edits (all probes of one edit resampled together), "
    "1000 resamples, seed 0",
    "fluency": "EasyEdit: mean over generations of (2/3 H(bigram) + 4/3 H(trigram))/2 in bits, "
    "x100; 32 greedy tokens (end-of-sequence suppressed) from each edit prompt",
    "perplexity": "exp(mean token NLL) on held-out text (synthetic world: on the answer, '.' "
    "and end-of-sequence of each line, as the world model is trained); CI by bootstrap over "
    "texts",
    "world_recall / world_two_hop": "synthetic world only: closed-book recall (training "
    "phrasings) and untrained two-hop questions about people no benchmark edit touches, "
    "200 items, greedy exact match",
}


# ---------------------------------------------------------------- pre-edit reference


# ---------------------------------------------------------------- one model on probes


# ---------------------------------------------------------------- general capability


# ---------------------------------------------------------------- a run directory


# 82 lines, most of them its docstring: the one public entry of the harness documents every
# option in one place; the body is a sequence of calls (methods, sequential, retention, report)
def evaluate_run(
    run_dir: str | os.PathLike,
    baselines: Sequence[str] = ("base", "prompt"),
    sequential: int | None = None,
    retention: int | None = None,
    *,
    heldout: str | os.PathLike | Sequence[str] | None = None,
    hparams: Mapping[str, Mapping] | None = None,
    students: Mapping[str, str | os.PathLike] | None = None,
    retention_methods: Sequence[str] | None = None,
    retention_lr: float = 3e-4,
    probes: Sequence[Probe] | None = None,
    probes_file: str | os.PathLike | None = None,
    hook_for: HookFactory | None = None,
    seed: int = 0,
    progress: bool = True,
    write: bool = True,
) -> dict:
    """Evaluate the run's student and ``baselines`` on the run's probes: the metrics.json object.

    ``students``: weight-edited models to compare (name → model dir); by default
    ``{"skedit": DIR/model}`` when it exists. Sequential and retention experiments run when
    ``sequential`` (number of batches) / ``retention`` (fine-tuning steps) are given;
    ``retention_methods`` limits retention to some edited models (default: all of them).
    Probes whose prompt is in ``DIR/transfer.jsonl`` (the student trained on them) are marked
    ``in_transfer`` and each method gets a ``held_out`` summary of the probes it never saw.
    PROMPT reads each edit's approved prompt with the run's ``teacher`` model when the config
    names one (else the base model). ``probes`` replaces DIR/probes.jsonl as the evaluation set
    (e.g. a benchmark's own probes, some never shown to the agents or the student);
    ``probes_file`` does the same from any edits file, keeping only the probes the base model
    answered as the fact says (``eval.heldout``; what was dropped is in the protocol).
    ``hook_for(base path, config)`` may add what the model's source knows (the synthetic
    world's held-out text, answer-token perplexity, recall: ``world.hooks.eval_hook_for``). With
    ``write`` (default) DIR/metrics.json, report.md and report.html are written.
    """
    from skedit.pipelines.editors import baselines as B

    data = load_run(run_dir)
    if probes is not None:
        data.probes = list(probes)
    kept = _probes_from_file(data, probes_file, progress) if probes_file else None
    fns = {name: B.resolve(name) for name in baselines}  # fail before any work
    s = _open(data, heldout, hook_for, seed=seed, progress=progress)
    if students is None:
        students = {"skedit": data.student_dir} if data.student_dir.exists() else {}
    names = [*students, *baselines]
    out, edited_models, used_hparams = _run_methods(s, names, students, fns, hparams)
    out["protocol"] = _protocol(s, names, students, used_hparams)
    if kept is not None:
        out["protocol"]["probes_file"] = kept.summary()
    edited = [n for n in names if n in students or n in B.WEIGHT_EDITING]
    if sequential:
        from skedit.pipelines.eval.sequential import run_sequential

        out["sequential"] = run_sequential(
            data,
            s.base_model,
            s.tok,
            k=sequential,
            methods=edited,
            students={k: training_for(data, k) for k in students},
            hparams=used_hparams,
            reference=s.reference,
            seed=seed,
            progress=progress,
        )
    if retention:
        keep = {
            k: v
            for k, v in edited_models.items()
            if retention_methods is None or k in retention_methods
        }
        retention_out, out["protocol"]["retention_text"] = _retention(
            s, keep, students, heldout is None, steps=retention, lr=retention_lr
        )
        out["retention"] = retention_out
    out = {"protocol": out.pop("protocol"), **out}  # metrics.json starts with the protocol
    if write:
        from skedit.pipelines.eval.report import write_report

        write_report(data.run_dir, out)
    return out


@dataclass
class _Session:
    """What every method of one evaluation is measured with."""

    data: RunData
    base_model: object
    tok: object
    reference: dict
    hook: EvalHook | None
    texts: list[str]
    text_source: str
    fluency_prompts: list[str]
    trained: set[str]  # prompts of DIR/transfer.jsonl: the student trained on them
    seed: int
    progress: bool


def _open(data: RunData, heldout, hook_for, *, seed: int, progress: bool) -> _Session:
    from skedit.sft.modelops import load_model

    hook = hook_for(data.base_path, data.config) if hook_for else None
    texts, text_source = heldout_texts(data, heldout, hook=hook)
    base_model, tok = load_model(data.base_path)
    reference = cached_reference(
        data.base_path,
        data.probes,
        data.run_dir / "eval_cache",
        model=base_model,
        tokenizer=tok,
        progress=progress,
    )
    trained = trained_prompts(data.run_dir)
    return _Session(
        data,
        base_model,
        tok,
        reference,
        hook,
        texts,
        text_source,
        fluency_prompts=list(dict.fromkeys(e.prompt for e in data.edits))[:100],
        trained=trained,
        seed=seed,
        progress=progress,
    )


def _measure(s: _Session, model, prefixes=None) -> dict:
    """Every metric of one model: probes, fluency, the hook's extras, perplexity."""
    res = evaluate_model(
        model,
        s.tok,
        s.data.probes,
        prefixes=prefixes,
        reference=s.reference,
        relations=s.data.relations,
        seed=s.seed,
        progress=s.progress,
    )
    res["fluency"] = generation_fluency(model, s.tok, s.fluency_prompts, seed=s.seed)
    if s.hook is not None and s.hook.capability is not None:
        res.update(s.hook.capability(model, s.tok, seed=s.seed))
    answer_tokens = s.hook.answer_tokens if s.hook else None
    res["perplexity"] = (
        heldout_perplexity(model, s.tok, s.texts, answer_tokens=answer_tokens, seed=s.seed)
        if s.texts
        else {"mean": None, "n": 0, "ci": None}
    )
    return res


def _method_model(s: _Session, name: str, students, fns, hparams, used_hparams: dict):
    """The model ``name`` is measured as: a student, the teacher or base model reading the
    prompt (PROMPT), the base model, or a copy of the base model edited by a baseline."""
    from skedit.pipelines.editors import baselines as B
    from skedit.sft.modelops import load_model

    data = s.data
    if name in students:
        return load_model(students[name])[0]
    if name in B.CONTEXT_METHODS and data.config.get("teacher") not in (None, data.base_path):
        return load_model(data.config["teacher"])[0]
    if name in B.CONTEXT_METHODS or name == "base":
        return s.base_model
    given = dict((hparams or {}).get(name) or {})
    if name in B.KEY_STATS_EDITORS and not given.get("corpus") and s.hook and s.hook.key_stats:
        given["corpus"] = s.hook.key_stats()  # the model's source knows its text
    used_hparams[name] = B.hparams_for(name, given)
    return fns[name](
        copy.deepcopy(s.base_model), s.tok, data.edits, {**used_hparams[name], "seed": s.seed}
    )


def _run_methods(s: _Session, names, students, fns, hparams) -> tuple[dict, dict, dict]:
    """Measure each method: ``({"methods", "rows"}, edited models by name, hparams used)``."""
    from skedit.pipelines.editors import baselines as B

    methods: dict[str, dict] = {}
    rows: dict[str, list] = {}
    edited_models: dict[str, object] = {}
    used_hparams: dict[str, dict] = {}
    bar = tqdm(names, desc="methods", unit="method", disable=not s.progress)
    for name in bar:
        bar.set_postfix(method=name)
        t0 = time.perf_counter()
        model = _method_model(s, name, students, fns, hparams, used_hparams)
        seconds = time.perf_counter() - t0
        res = _measure(s, model, s.data.prefixes if name in B.CONTEXT_METHODS else None)
        res["edit_seconds"] = round(seconds, 2)
        rows[name] = res.pop("rows")
        for r in rows[name]:
            r["in_transfer"] = r["prompt"] in s.trained
        if s.trained:
            held = [r for r in rows[name] if not r["in_transfer"]]
            res["held_out"] = aggregate(held, seed=s.seed)
        methods[name] = res
        if name in students or name in B.WEIGHT_EDITING:
            edited_models[name] = model
    return {"methods": methods, "rows": rows}, edited_models, used_hparams


def _protocol(s: _Session, names, students, used_hparams) -> dict:
    data = s.data
    return {
        **PROTOCOL,
        "model": data.base_path,
        "run_dir": str(data.run_dir),
        "n_edits": len(data.edits),
        "n_probes": {k: sum(p.kind == k for p in data.probes) for k in METRIC_OF_KIND},
        "n_approved_prompts": sum(dp.status in APPROVED for dp in data.prompts),
        # the rest were never taught (nor given to PROMPT), and are scored all the same
        "n_edits_approved": len(data.prefixes),
        "methods": names,
        "students": {k: str(v) for k, v in students.items()},
        "hparams": used_hparams,
        "teacher": data.config.get("teacher") or data.base_path,
        "heldout": s.text_source,
        "held_out_probes": "probes whose prompt is not in DIR/transfer.jsonl "
        "(the student never trained on them)",
        "seed": s.seed,
    }


def _retention(
    s: _Session, models: dict, students, use_hook: bool, *, steps: int, lr: float
) -> tuple[dict, str]:
    """Retention of the edits under unrelated fine-tuning, and the name of the text used."""
    from skedit.pipelines.eval.retention import run_retention

    texts, source = s.texts, s.text_source
    if use_hook and s.hook is not None and s.hook.retention is not None:
        texts, source = s.hook.retention(), s.hook.retention_source
    out = run_retention(
        s.data,
        s.base_model,
        s.tok,
        models,
        texts,
        steps=steps,
        lr=lr,
        answer_tokens=s.hook.answer_tokens if s.hook else None,
        ablate={k: training_for(s.data, k) for k in students if k.startswith("skedit")},
        seed=s.seed,
        progress=s.progress,
    )
    return out, source


def _probes_from_file(data: RunData, path: str | os.PathLike, progress: bool):
    """Replace the run's probes with the held-out probes of ``path`` (see ``eval.heldout``)."""
    from skedit.pipelines.eval.heldout import heldout_probes
    from skedit.sft.modelops import load_model

    model, tok = load_model(data.base_path)
    kept = heldout_probes(model, tok, data.edits, path, progress=progress)
    if not kept.probes:
        raise SkeditError(
            "no probe of this file matches an edit of the run",
            file=str(path),
            hint="edits are matched by id, else by subject and prompt",
        )
    data.probes = kept.probes
    return kept
