"""Sequential editing: the same N edits applied in K batches, every edit re-measured after each.

A batch is applied to the model the previous batch left (never to a fresh base). For
weight-editing baselines a batch is ``apply_<method>(model, tok, batch_edits, hparams)``; for
skedit it is ``train_in_memory`` on the transfer rows (``DIR/transfer.jsonl``) of the batch's
edits plus the ``replay`` share of earlier batches' rows, as ``skedit sft`` does on a student.
After each batch every edit's probes are measured, so a curve shows both how new edits take
and how earlier ones survive later batches.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from tqdm.auto import tqdm

from skedit.pipelines.eval.scoring import evaluate_model
from skedit.pipelines.run.rundir import RunDir
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import read_jsonl
from skedit.prompts.schema import Edit, TransferExample


def split_batches(edits: Sequence[Edit], k: int) -> list[list[Edit]]:
    """``k`` contiguous batches whose sizes differ by at most one (no empty batch)."""
    if k < 1:
        raise SkeditError("--sequential needs at least one batch", field="--sequential")
    k = min(k, len(edits))
    size, extra = divmod(len(edits), k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (1 if i < extra else 0)
        out.append(list(edits[start:end]))
        start = end
    return out


def _skedit_step(data, tokenizer, training: Mapping | None = None):
    """A function that trains a model on the transfer rows of a batch of edits."""
    path = RunDir(data.run_dir).transfer
    if not path.exists():
        raise SkeditError(
            "sequential skedit needs the transfer set",
            file=str(path),
            hint="run `skedit sft DIR` first, or leave skedit out",
        )
    rows = read_jsonl(path, TransferExample)
    from skedit.sft.config import TrainConfig
    from skedit.sft.train import train_in_memory

    if training is None:
        training = data.config.get("training")
    config = TrainConfig.from_dict(dict(training or {}), source="config.yaml")

    from skedit.sft.train import with_replay

    done: list = []  # rows of the batches already applied (replayed as `skedit sft` does)

    def step(model, batch: Sequence[Edit]):
        ids = {e.id for e in batch}
        mine = [r for r in rows if r.edit_id in ids]
        train = with_replay(mine, done, config.replay, config.seed)
        done.extend(mine)
        return train_in_memory(model, tokenizer, train, config)

    return step


def _point(model, tokenizer, data, seen: set[str], reference, n_batch: int) -> dict:
    res = evaluate_model(model, tokenizer, data.probes, reference=reference)
    rows = res["rows"]
    seen_edit = [r["exact_match"] for r in rows if r["kind"] == "edit" and r["edit_id"] in seen]
    return {
        "batch": n_batch,
        "edits_so_far": len(seen),
        "edit_success": res["edit_success"]["mean"],
        "edit_success_seen": sum(seen_edit) / len(seen_edit) if seen_edit else None,
        "paraphrase": res["paraphrase"]["mean"],
        "portability": res["portability"]["mean"],
        "locality": res["locality"]["mean"],
    }


def sequential_curve(step, base_model, tokenizer, data, batches, *, reference=None, desc=""):
    """Apply ``step(model, batch)`` batch after batch; measure all edits after each."""
    model = copy.deepcopy(base_model)
    seen: set[str] = set()
    points = [_point(model, tokenizer, data, seen, reference, 0)]
    for i, batch in enumerate(
        tqdm(batches, desc=desc, unit="batch", leave=False, disable=not desc), start=1
    ):
        model = step(model, batch)
        seen |= {e.id for e in batch}
        points.append(_point(model, tokenizer, data, seen, reference, i))
    return points


def run_sequential(
    data,
    base_model,
    tokenizer,
    *,
    k: int,
    methods: Sequence[str],
    hparams: Mapping[str, Mapping] | None = None,
    students: Mapping[str, Mapping] | None = None,
    reference=None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """``{"k", "batch_sizes", "curves": {method: [points]}}`` for skedit and each baseline.

    ``students``: student name → its ``training:`` settings; a student's batch is
    ``train_in_memory`` on the transfer rows of the batch's edits.
    """
    from skedit.pipelines.editors import baselines as B

    batches = split_batches(data.edits, k)
    curves = {}
    for name in methods:
        if name in (students or {}):
            step = _skedit_step(data, tokenizer, students[name])
        else:
            fn = B.resolve(name)
            hp = {**B.hparams_for(name, (hparams or {}).get(name)), "seed": seed}

            def step(model, batch, fn=fn, hp=hp):
                return fn(model, tokenizer, batch, hp)

        curves[name] = sequential_curve(
            step,
            base_model,
            tokenizer,
            data,
            batches,
            reference=reference,
            desc=f"sequential {name}" if progress else "",
        )
    return {"k": len(batches), "batch_sizes": [len(b) for b in batches], "curves": curves}
