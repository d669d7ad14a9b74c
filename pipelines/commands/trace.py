"""``skedit trace MODEL EDITS``: causal tracing to choose the layers ROME/MEMIT edit."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skedit.prompts.errors import SkeditError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="causal tracing: which layers carry the facts of EDITS (heatmap PNG + layers)",
        description="Corrupt the subject's embeddings with noise, restore one clean hidden "
        "state (layer, token) at a time, and measure how much of the clean answer comes back. "
        "Writes trace.png and trace.json to --out and prints the layers to edit.",
    )
    p.add_argument("model", help="model folder (or hub id already in the local cache)")
    p.add_argument("edits", help="edit file (skedit JSONL or any format `skedit data` reads)")
    p.add_argument("--out", default="trace", help="output folder (default: ./trace)")
    p.add_argument("--limit", type=int, default=20, help="trace the first N edits (default 20)")
    p.add_argument("--samples", type=int, default=10, help="noise samples per prompt")
    p.add_argument("--noise", type=float, default=3.0, help="noise std in embedding stds")
    p.add_argument("--kind", choices=["hidden", "mlp", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_trace)


def read_edits(path: str):
    """Edits from ``path`` (any format ``skedit data`` reads)."""
    from skedit.pipelines.data.datasets import load_edits

    return load_edits(path).edits


def _trace(args: argparse.Namespace) -> int:
    import torch

    from skedit.pipelines.editors import tracing
    from skedit.sft.modelops import check_model_path, load_model

    check_model_path(args.model)
    edits = read_edits(args.edits)[: max(1, args.limit)]
    if not edits:
        raise SkeditError("no edits to trace", file=args.edits)
    torch.manual_seed(args.seed)
    model, tok = load_model(args.model)
    kinds = ("hidden", "mlp") if args.kind == "both" else (args.kind,)
    traces = tracing.trace_edits(
        model, tok, edits, samples=args.samples, noise=args.noise, kinds=kinds, seed=args.seed
    )
    out = Path(args.out)
    png = tracing.plot_traces(traces, out / "trace.png")
    summary = {kind: tracing.summarise(traces, kind) for kind in kinds}
    from skedit.prompts.io import atomic_write_json

    atomic_write_json(
        out / "trace.json", {"summary": summary, "traces": tracing.traces_json(traces)}
    )
    if args.json:
        print(json.dumps({"summary": summary, "plot": str(png), "json": str(out / "trace.json")}))
        return 0
    for kind, s in summary.items():
        effects = ", ".join(f"{i}: {v:+.3f}" for i, v in enumerate(s["effect_by_layer"]))
        print(
            f"{kind}: indirect effect at the subject's last token by layer ({s['prompts']} prompts): {effects}"
        )
    pick = summary.get("mlp", next(iter(summary.values())))
    print(
        f"layers that carry the facts: {pick['ranked_layers'][:3]} "
        f"(p clean {pick['p_clean']:.2f}, corrupted {pick['p_corrupt']:.2f})"
    )
    print(f"suggested: rome layer: {pick['rome_layer']}, memit layers: {pick['memit_layers']}")
    print(f"plot: {png}\njson: {out / 'trace.json'}")
    return 0
