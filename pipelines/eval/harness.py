"""One evaluation harness for the student, the unedited base, PROMPT and every baseline.

``evaluate_model`` measures a model on probes (greedy exact match *and* teacher-forced token
accuracy per probe); ``evaluate_run`` loads a run directory, runs every requested method
through the same function on the same probes and returns the ``metrics.json`` object.
The locality reference is the pre-edit model's output, computed once per (model, probe set)
and cached on disk.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from skedit.pipelines.eval import metrics as M
from skedit.pipelines.eval.hooks import EvalHook, HookFactory
from skedit.prompts import APPROVED
from skedit.prompts.answers import first_answer
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_json, read_jsonl
from skedit.prompts.render import context_prefix
from skedit.prompts.schema import DensePrompt, Edit, Probe, TransferExample
from skedit.sft.modelops import encode_input, generate, score_targets

METRIC_OF_KIND = {
    "edit": "edit_success",
    "rephrase": "paraphrase",
    "portability": "portability",
    "locality": "locality",
}
METRICS = list(METRIC_OF_KIND.values())

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


def reference_key(model_dir: str | os.PathLike, probes: Sequence[Probe]) -> str:
    """A hash of the model's files (name, size, mtime) and of the probe set."""
    h = hashlib.sha256()
    root = Path(model_dir)
    if root.is_dir():
        for f in sorted(root.iterdir()):
            if f.is_file() and f.suffix in {".safetensors", ".bin", ".json", ".pt"}:
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(str(root.resolve()).encode())
    for p in probes:
        h.update(p.model_dump_json().encode())
    return h.hexdigest()[:16]


def pre_edit_reference(
    model,
    tokenizer,
    probes: Sequence[Probe],
    *,
    max_new_tokens: int = 8,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, dict]:
    """The pre-edit model's outputs on the locality probes: ``{probe_id: {"answer", "target",
    "predicted"}}``. ``target`` is the recorded ``expected`` when present (else the answer);
    ``predicted`` are the argmax ids on the teacher-forced ``prompt + " " + target``."""
    loc = [p for p in probes if p.kind == "locality"]
    if not loc:
        return {}
    gens = generate(
        model,
        tokenizer,
        [p.prompt for p in loc],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc="pre-edit reference" if progress else None,
    )
    answers = [first_answer(g) for g in gens]
    targets = [p.expected if p.expected else a for p, a in zip(loc, answers, strict=True)]
    keep = [i for i, t in enumerate(targets) if t.strip()]
    scores = score_targets(
        model, tokenizer, [loc[i].prompt for i in keep], [targets[i] for i in keep]
    )
    out = {
        p.id: {"answer": a, "target": t, "predicted": None}
        for p, a, t in zip(loc, answers, targets, strict=True)
    }
    for i, s in zip(keep, scores, strict=True):
        out[loc[i].id]["predicted"] = list(s.predicted)
    return out


def cached_reference(
    model_dir: str | os.PathLike,
    probes: Sequence[Probe],
    cache_dir: str | os.PathLike,
    *,
    model=None,
    tokenizer=None,
    progress: bool = False,
) -> dict[str, dict]:
    """:func:`pre_edit_reference` of the model in ``model_dir``, cached in ``cache_dir``."""
    path = Path(cache_dir) / f"reference-{reference_key(model_dir, probes)}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    if model is None:
        from skedit.sft.modelops import load_model

        model, tokenizer = load_model(model_dir)
    ref = pre_edit_reference(model, tokenizer, probes, progress=progress)
    atomic_write_json(path, ref)
    return ref


# ---------------------------------------------------------------- one model on probes


def _prefix_list(
    probes: Sequence[Probe], prefixes: Mapping[str, str] | Sequence[str | None] | None
) -> list[str | None]:
    if prefixes is None:
        return [None] * len(probes)
    if isinstance(prefixes, Mapping):
        return [prefixes.get(p.edit_id or "") for p in probes]
    prefixes = list(prefixes)
    if len(prefixes) != len(probes):
        raise ValueError(f"{len(prefixes)} prefixes for {len(probes)} probes")
    return prefixes


def _target(probe: Probe, reference: Mapping[str, dict] | None) -> str | None:
    if probe.kind == "locality":
        if probe.expected:
            return probe.expected
        ref = (reference or {}).get(probe.id)
        return ref["target"] if ref and ref.get("target") else None
    return probe.answers[0] if probe.answers else None


def score_probes(
    model,
    tokenizer,
    probes: Sequence[Probe],
    *,
    prefixes: Mapping[str, str] | Sequence[str | None] | None = None,
    reference: Mapping[str, dict] | None = None,
    relations: Mapping[str, str | None] | None = None,
    max_new_tokens: int = 8,
    batch_size: int = 64,
    progress: bool = False,
) -> list[dict]:
    """Per-probe rows: the greedy generation, exact match and token-level score.

    Locality probes without a pre-edit answer (no ``expected``, nothing in ``reference``) are
    left out rather than scored against the gold answer.
    """
    pfx = _prefix_list(probes, prefixes)
    items = [(p, c, _target(p, reference)) for p, c in zip(probes, pfx, strict=True)]
    items = [(p, c, t) for p, c, t in items if t and t.strip()]
    if not items:
        return []
    prompts = [p.prompt for p, _, _ in items]
    ctx = [c for _, c, _ in items]
    gens = generate(
        model,
        tokenizer,
        prompts,
        prefixes=ctx,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc="generate" if progress else None,
    )
    scores = score_targets(
        model,
        tokenizer,
        prompts,
        [t for _, _, t in items],
        prefixes=ctx,
        batch_size=batch_size,
        desc="score" if progress else None,
    )
    rows = []
    for (p, c, t), g, s in zip(items, gens, scores, strict=True):
        if p.kind == "locality":
            em = M.locality_agreement(g, t)
            ref = (reference or {}).get(p.id) or {}
            pre = ref.get("predicted")
            tok = (
                M.token_locality(s.predicted, pre)
                if pre is not None and len(pre) == len(s.predicted)
                else s.token_accuracy  # same as the pre-edit argmax when it generated `t`
            )
        else:
            em = M.exact_match(g, p.answers)
            tok = s.token_accuracy
        rows.append(
            {
                "probe_id": p.id,
                "edit_id": p.edit_id,
                "kind": p.kind,
                "subkind": p.subkind,
                "relation": (relations or {}).get(p.edit_id or ""),
                "prompt": p.prompt,
                "context": bool(c),
                "target": t,
                "generation": g,
                "exact_match": em,
                "token_accuracy": tok,
            }
        )
    return rows


def aggregate(rows: Sequence[dict], *, seed: int = 0) -> dict:
    """``{metric: {"mean","n","ci","token_accuracy": {"mean","n","ci"}}}`` from probe rows."""
    out = {}
    for kind, metric in METRIC_OF_KIND.items():
        sel = [r for r in rows if r["kind"] == kind]
        groups = [r["edit_id"] or r["probe_id"] for r in sel]
        entry = M.summarise([r["exact_match"] for r in sel], groups=groups, seed=seed)
        entry["token_accuracy"] = M.summarise(
            [r["token_accuracy"] for r in sel], groups=groups, seed=seed
        )
        out[metric] = entry
    return out


def evaluate_model(
    model,
    tokenizer,
    probes: Sequence[Probe],
    *,
    prefixes: Mapping[str, str] | Sequence[str | None] | None = None,
    reference: Mapping[str, dict] | None = None,
    relations: Mapping[str, str | None] | None = None,
    max_new_tokens: int = 8,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Edit success, paraphrase, portability and locality of ``model`` on ``probes``.

    ``prefixes``: a context per probe (a list aligned with ``probes``) or per edit id (a dict),
    already laid out by ``render.context_prefix`` — the PROMPT baseline. ``reference``: the
    pre-edit model's outputs from :func:`pre_edit_reference` (token-level locality compares
    argmaxes against it). ``relations``: edit id → relation, adds ``by_relation``.
    Returns the four metrics plus ``rows`` (one per probe) and ``by_relation``.
    """
    rows = score_probes(
        model,
        tokenizer,
        probes,
        prefixes=prefixes,
        reference=reference,
        relations=relations,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    out = aggregate(rows, seed=seed)
    by_relation = {}
    if relations:
        for rel in sorted({r["relation"] for r in rows if r["relation"]}):
            by_relation[rel] = aggregate([r for r in rows if r["relation"] == rel], seed=seed)
    out["by_relation"] = by_relation
    out["rows"] = rows
    return out


def edit_success_only(
    model, tokenizer, probes: Sequence[Probe], *, kinds=("edit",), batch_size: int = 64
) -> float:
    """Mean greedy exact match on the probes of ``kinds`` (for curves: sequential, retention)."""
    sel = [p for p in probes if p.kind in kinds]
    rows = score_probes(model, tokenizer, sel, batch_size=batch_size)
    return sum(r["exact_match"] for r in rows) / len(rows) if rows else float("nan")


# ---------------------------------------------------------------- general capability


def encode_texts(
    tokenizer, texts: Sequence[str], *, max_length: int = 256, answer_tokens: int | None = None
) -> list[tuple[list[int], list[int]]]:
    """``(ids, labels)`` per text for language-model loss (labels -100 where no loss).

    ``answer_tokens``: score only the last N tokens of each text and the end-of-sequence
    token after them — the synthetic world's lines are "question answer." and its model is
    trained on the answers only; ``None`` scores every token (any other model).
    """
    out = []
    eos = tokenizer.eos_token_id
    for t in texts:
        if not t.strip():
            continue
        ids = encode_input(tokenizer, t)[:max_length]
        if answer_tokens:
            ids = ids + ([eos] if eos is not None else [])
            n = answer_tokens + (1 if eos is not None else 0)
            labels = [-100] * (len(ids) - n) + ids[-n:]
        else:
            labels = [-100] + ids[1:]
        if len(ids) > 1 and any(x != -100 for x in labels[1:]):
            out.append((ids, labels))
    return out


def _pad_right(rows, pad: int, device):
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for i, (a, b) in enumerate(rows):  # right padding: positions start at 0 for every row
        ids[i, : len(a)] = torch.tensor(a)
        labels[i, : len(b)] = torch.tensor(b)
        mask[i, : len(a)] = 1
    return ids.to(device), mask.to(device), labels.to(device)


@torch.no_grad()
def heldout_perplexity(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int = 256,
    batch_size: int = 16,
    answer_tokens: int | None = None,
    seed: int = 0,
) -> dict:
    """Perplexity on ``texts`` (see :func:`encode_texts`) with a bootstrap CI over texts."""
    per_text: list[tuple[float, int]] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = encode_texts(tokenizer, texts, max_length=max_length, answer_tokens=answer_tokens)
    for start in range(0, len(rows), batch_size):
        ids, mask, labels = _pad_right(rows[start : start + batch_size], pad, model.device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100
        )  # (batch, width-1)
        m = (labels[:, 1:] != -100).float()
        for i in range(ids.shape[0]):
            per_text.append((float((nll[i] * m[i]).sum()), int(m[i].sum())))
    total = sum(s for s, _ in per_text)
    n = sum(c for _, c in per_text)
    if not n:
        return {"mean": None, "n": 0, "ci": None}
    # bootstrap the mean NLL over texts: one value per token, grouped by text
    values = [s / c for s, c in per_text for _ in range(c)]
    groups = [i for i, (_, c) in enumerate(per_text) for _ in range(c)]
    lo, hi = M.bootstrap_ci(values, groups=groups, seed=seed, n_resamples=500)
    return {"mean": M.perplexity(total, n), "n": n, "ci": [math.exp(lo), math.exp(hi)]}


def generation_fluency(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 32, seed: int = 0
) -> dict:
    """EasyEdit fluency (×100) of greedy generations from ``prompts``, with a bootstrap CI.

    End-of-sequence is suppressed for ``max_new_tokens`` tokens: a model that answers in one
    word and stops (the world model) would otherwise score 0 whatever its weights.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    gens: list[str] = []
    encoded = [encode_input(tokenizer, p) for p in prompts]
    with torch.no_grad():
        for start in range(0, len(encoded), 32):
            chunk = encoded[start : start + 32]
            width = max(len(e) for e in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(chunk):
                ids[i, width - len(e) :] = torch.tensor(e)
                mask[i, width - len(e) :] = 1
            out = model.generate(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
            gens += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    per = [100.0 * M.text_fluency(g) for g in gens]
    return M.summarise(per, seed=seed)


# ---------------------------------------------------------------- a run directory


@dataclass
class RunData:
    """What ``skedit eval`` reads from a run directory."""

    run_dir: Path
    config: dict
    base_path: str
    edits: list[Edit]
    probes: list[Probe]
    prompts: list[DensePrompt]

    @property
    def prefixes(self) -> dict[str, str]:
        """edit id → the approved dense prompt laid out as context (the PROMPT baseline)."""
        out = {}
        for dp in self.prompts:
            if dp.status in APPROVED:
                for eid in dp.edit_ids:
                    out[eid] = context_prefix(dp.text)
        return out

    @property
    def relations(self) -> dict[str, str | None]:
        return {e.id: e.relation for e in self.edits}

    @property
    def student_dir(self) -> Path:
        return self.run_dir / "model"


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read config, edits, probes and prompts of a run; errors name the missing file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SkeditError(
            "run directory not found",
            file=str(run_dir),
            hint="give the DIR that `skedit agents run` wrote",
        )
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise SkeditError(
            "missing config.yaml", file=str(cfg_path), hint="run `skedit agents run` first"
        )
    try:
        config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SkeditError(f"not valid YAML: {exc}", file=str(cfg_path)) from exc
    base = config.get("model")
    if not base:
        raise SkeditError(
            "no base model path",
            file=str(cfg_path),
            field="model",
            hint="add `model: <path of the base model>`",
        )
    edits_path = run_dir / "edits.jsonl"
    if not edits_path.exists():
        raise SkeditError("missing edits.jsonl", file=str(edits_path))
    edits = read_jsonl(edits_path, Edit)
    probes_path = run_dir / "probes.jsonl"
    probes = (
        read_jsonl(probes_path, Probe)
        if probes_path.exists()
        else [p for e in edits for p in e.probes()]
    )
    prompts_path = run_dir / "prompts" / "prompts.jsonl"
    prompts = read_jsonl(prompts_path, DensePrompt) if prompts_path.exists() else []
    return RunData(run_dir, config, str(base), edits, probes, prompts)


def heldout_texts(
    data: RunData,
    heldout: str | os.PathLike | Sequence[str] | None,
    *,
    hook: EvalHook | None = None,
    limit: int = 200,
) -> tuple[list[str], str]:
    """Held-out text for perplexity and retention: a file (one passage per line), the
    ``hook``'s held-out text (the synthetic world's), else none. Returns (texts, source)."""
    if heldout is not None and not isinstance(heldout, str | os.PathLike):
        return list(heldout)[:limit], "given texts"
    if heldout is not None:
        path = Path(heldout)
        if not path.is_file():
            raise SkeditError("held-out text file not found", file=str(path), field="--heldout")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return lines[:limit], str(path)
    if hook is not None and hook.heldout is not None:
        return list(hook.heldout())[:limit], hook.heldout_source
    return [], "none (give --heldout FILE for perplexity and retention)"


def _training_for(data: RunData, student: str) -> dict:
    """The ``training:`` settings a student was trained with; ``skedit-kd`` → method kd."""
    training = dict(data.config.get("training") or {})
    suffix = student.removeprefix("skedit-")
    if suffix in ("sft", "kd"):
        training["method"] = suffix
    return training


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
    (e.g. a benchmark's own probes, some never shown to the agents or the student).
    ``hook_for(base path, config)`` may add what the model's source knows (the synthetic
    world's held-out text, answer-token perplexity, recall: ``world.hooks.eval_hook_for``). With
    ``write`` (default) DIR/metrics.json, report.md and report.html are written.
    """
    from skedit.pipelines.editors import baselines as B
    from skedit.sft.modelops import load_model

    data = load_run(run_dir)
    if probes is not None:
        data.probes = list(probes)
    fns = {name: B.resolve(name) for name in baselines}  # fail before any work
    hook = hook_for(data.base_path, data.config) if hook_for else None
    texts, text_source = heldout_texts(data, heldout, hook=hook)
    answer_tokens = hook.answer_tokens if hook else None
    base_model, tok = load_model(data.base_path)
    reference = cached_reference(
        data.base_path,
        data.probes,
        data.run_dir / "eval_cache",
        model=base_model,
        tokenizer=tok,
        progress=progress,
    )
    fluency_prompts = list(dict.fromkeys(e.prompt for e in data.edits))[:100]
    if students is None:
        students = {"skedit": data.student_dir} if data.student_dir.exists() else {}

    def measure(name, model, prefixes=None) -> dict:
        res = evaluate_model(
            model,
            tok,
            data.probes,
            prefixes=prefixes,
            reference=reference,
            relations=data.relations,
            seed=seed,
            progress=progress,
        )
        res["fluency"] = generation_fluency(model, tok, fluency_prompts, seed=seed)
        if hook is not None and hook.capability is not None:
            res.update(hook.capability(model, tok, seed=seed))
        res["perplexity"] = (
            heldout_perplexity(model, tok, texts, answer_tokens=answer_tokens, seed=seed)
            if texts
            else {"mean": None, "n": 0, "ci": None}
        )
        return res

    transfer_path = data.run_dir / "transfer.jsonl"
    trained = (
        {t.prompt for t in read_jsonl(transfer_path, TransferExample)}
        if transfer_path.exists()
        else set()
    )
    methods: dict[str, dict] = {}
    rows: dict[str, list] = {}
    edited_models: dict[str, object] = {}
    used_hparams: dict[str, dict] = {}
    names = [*students, *baselines]
    bar = tqdm(names, desc="methods", unit="method", disable=not progress)
    for name in bar:
        bar.set_postfix(method=name)
        t0 = time.perf_counter()
        if name in students:
            model, _ = load_model(students[name])
        elif name in B.CONTEXT_METHODS and data.config.get("teacher") not in (
            None,
            data.base_path,
        ):
            model, _ = load_model(data.config["teacher"])
        elif name in B.CONTEXT_METHODS or name == "base":
            model = base_model
        else:
            used_hparams[name] = B.hparams_for(name, (hparams or {}).get(name))
            model = fns[name](
                copy.deepcopy(base_model), tok, data.edits, {**used_hparams[name], "seed": seed}
            )
        seconds = time.perf_counter() - t0
        res = measure(name, model, data.prefixes if name in B.CONTEXT_METHODS else None)
        res["edit_seconds"] = round(seconds, 2)
        rows[name] = res.pop("rows")
        for r in rows[name]:
            r["in_transfer"] = r["prompt"] in trained
        if trained:
            res["held_out"] = aggregate([r for r in rows[name] if not r["in_transfer"]], seed=seed)
        methods[name] = res
        if name in students or name in B.WEIGHT_EDITING:
            edited_models[name] = model

    out = {
        "protocol": {
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
            "heldout": text_source,
            "held_out_probes": "probes whose prompt is not in DIR/transfer.jsonl "
            "(the student never trained on them)",
            "seed": seed,
        },
        "methods": methods,
        "rows": rows,
    }
    if sequential:
        from skedit.pipelines.eval.sequential import run_sequential

        out["sequential"] = run_sequential(
            data,
            base_model,
            tok,
            k=sequential,
            methods=[n for n in names if n in students or n in B.WEIGHT_EDITING],
            students={k: _training_for(data, k) for k in students},
            hparams=used_hparams,
            reference=reference,
            seed=seed,
            progress=progress,
        )
    if retention:
        from skedit.pipelines.eval.retention import run_retention

        retention_texts, source = texts, text_source
        if hook is not None and hook.retention is not None and heldout is None:
            retention_texts, source = hook.retention(), hook.retention_source
        out["protocol"]["retention_text"] = source
        out["retention"] = run_retention(
            data,
            base_model,
            tok,
            {
                k: v
                for k, v in edited_models.items()
                if retention_methods is None or k in retention_methods
            },
            retention_texts,
            steps=retention,
            lr=retention_lr,
            answer_tokens=answer_tokens,
            ablate={k: _training_for(data, k) for k in students if k.startswith("skedit")},
            seed=seed,
            progress=progress,
        )
    if write:
        from skedit.pipelines.eval.report import write_report

        write_report(data.run_dir, out)
    return out
