"""Write ``metrics.json``, ``report.md`` and a self-contained ``report.html`` for a run.

The HTML needs nothing but itself: CSS inline, plots as base64 PNGs (matplotlib, Agg backend).
The protocol — which metric, which reference, which decoding — comes first in every report.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path

from skedit.pipelines.eval.scoring import METRICS
from skedit.pipelines.run.rundir import RunDir
from skedit.prompts.io import atomic_write_json, atomic_write_text

LABELS = {
    "edit_success": "edit success",
    "paraphrase": "paraphrase",
    "portability": "portability",
    "locality": "locality",
}


def fmt(entry: Mapping | None, *, digits: int = 3) -> str:
    """``0.950 [0.910, 0.980] (n=100)`` — a mean with its CI."""
    if not entry or entry.get("mean") is None:
        return "–"
    m = entry["mean"]
    ci = entry.get("ci")
    s = f"{m:.{digits}f}"
    if ci and None not in ci:
        s += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return s


def _table(metrics: Mapping, measure: str) -> tuple[list[str], list[list[str]]]:
    """Methods × metrics; ``measure`` is ``"exact_match"`` or ``"token_accuracy"``."""
    head = ["method", *[LABELS[m] for m in METRICS]]
    methods = metrics.get("methods", {})
    world = [k for k in ("world_recall", "world_two_hop") if any(k in r for r in methods.values())]
    if measure == "exact_match":
        head += ["fluency (×100)", "perplexity", *[k.replace("_", " ") for k in world]]
    rows = []
    for name, res in methods.items():
        if measure == "exact_match":
            row = [name, *[fmt(res.get(m)) for m in METRICS]]
            row += [fmt(res.get("fluency"), digits=1), fmt(res.get("perplexity"), digits=2)]
            row += [fmt(res.get(k)) for k in world]
        else:
            row = [name, *[fmt((res.get(m) or {}).get("token_accuracy")) for m in METRICS]]
        rows.append(row)
    return head, rows


TABLES = {
    "exact_match": "Results: greedy exact match (mean [95% CI])",
    "token_accuracy": "Results: teacher-forced token accuracy, EasyEdit-compatible (mean [95% CI])",
}


def terminal_table(metrics: Mapping) -> str:
    """A compact table for the terminal: exact match of the four metrics with CIs, n."""
    timed = any("seconds_per_edit" in r for r in metrics.get("methods", {}).values())
    head = ["method", *[LABELS[m] for m in METRICS], "ppl", *(["s/edit"] if timed else [])]
    lines = []
    for name, res in metrics.get("methods", {}).items():
        cells = [name]
        for m in METRICS:
            e = res.get(m) or {}
            cells.append(
                "–"
                if e.get("mean") is None
                else f"{e['mean']:.2f} [{e['ci'][0]:.2f},{e['ci'][1]:.2f}]"
            )
        p = res.get("perplexity") or {}
        cells.append("–" if p.get("mean") is None else f"{p['mean']:.2f}")
        if timed:
            s = res.get("seconds_per_edit")
            cells.append("–" if s is None else f"{s:.3f}")
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines]
    n = (
        {
            m: max((res.get(m) or {}).get("n", 0) for res in metrics["methods"].values())
            for m in METRICS
        }
        if metrics.get("methods")
        else {}
    )
    out.append(
        "greedy exact match, 95% bootstrap CI; n = "
        + ", ".join(f"{LABELS[m]} {n.get(m, 0)}" for m in METRICS)
    )
    proto = metrics.get("protocol") or {}
    total, approved = proto.get("n_edits"), proto.get("n_edits_approved")
    if total is not None and approved is not None and approved < total:
        out.append(
            f"{total - approved} of {total} edits were in no approved prompt: neither the "
            "student nor PROMPT was given them, and they are scored (as failures) all the same"
        )
    return "\n".join(out)


# ---------------------------------------------------------------- plots


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


# one figure per report section, drawn in the order the report shows them; longer than 80 lines
# because each panel is a few plain matplotlib calls, clearer in sequence than split apart
def plots(metrics: Mapping) -> dict[str, bytes]:
    """PNG bytes of each plot the report has: by method, by probe kind, sequential, retention."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    methods = metrics.get("methods") or {}
    if methods:
        fig, ax = plt.subplots(figsize=(9, 4))
        names = list(methods)
        width = 0.8 / len(METRICS)
        for j, m in enumerate(METRICS):
            xs, ys, lo, hi = [], [], [], []
            for i, name in enumerate(names):
                e = methods[name].get(m) or {}
                if e.get("mean") is None:
                    continue
                xs.append(i + (j - (len(METRICS) - 1) / 2) * width)
                ys.append(e["mean"])
                lo.append(e["mean"] - e["ci"][0])
                hi.append(e["ci"][1] - e["mean"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=LABELS[m])
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("greedy exact match")
        ax.set_title("Metrics by method (95% CI)")
        ax.legend(fontsize=8, ncols=4, loc="lower center", bbox_to_anchor=(0.5, -0.45))
        out["by_method"] = _png(fig)

    rows = metrics.get("rows") or {}
    if rows:
        kinds = sorted({(r["kind"], r.get("subkind") or "") for rs in rows.values() for r in rs})
        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.8 / max(1, len(rows))
        for j, (name, rs) in enumerate(rows.items()):
            ys = []
            for k in kinds:
                sel = [r["exact_match"] for r in rs if (r["kind"], r.get("subkind") or "") == k]
                ys.append(sum(sel) / len(sel) if sel else 0.0)
            xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(kinds))]
            ax.bar(xs, ys, width, label=name)
        ax.set_xticks(range(len(kinds)), [f"{k}/{s}" if s else k for k, s in kinds], rotation=20)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("greedy exact match")
        ax.set_title("By probe kind")
        ax.legend(fontsize=8)
        out["by_kind"] = _png(fig)

    seq = metrics.get("sequential") or {}
    if seq.get("curves"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, pts in seq["curves"].items():
            ax.plot(
                [p["edits_so_far"] for p in pts],
                [p["edit_success"] for p in pts],
                "o-",
                label=f"{name}: edit success (all edits)",
            )
            ax.plot(
                [p["edits_so_far"] for p in pts],
                [p["locality"] for p in pts],
                "x--",
                alpha=0.6,
                label=f"{name}: locality",
            )
        ax.set_xlabel("edits applied so far")
        ax.set_ylim(-0.02, 1.05)
        ax.set_title(f"Sequential editing ({seq['k']} batches)")
        ax.legend(fontsize=7)
        out["sequential"] = _png(fig)

    ret = metrics.get("retention") or {}
    if ret.get("curves"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, pts in ret["curves"].items():
            ax.plot([p["step"] for p in pts], [p["edit_success"] for p in pts], "o-", label=name)
        ax.set_xlabel("fine-tuning steps on unrelated text")
        ax.set_ylabel("edit success")
        ax.set_ylim(-0.02, 1.05)
        ax.set_title("Retention after further fine-tuning")
        ax.legend(fontsize=7)
        out["retention"] = _png(fig)
    return out


# ---------------------------------------------------------------- markdown and html


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _sections(metrics: Mapping) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table after the main one."""
    out = []
    methods = metrics.get("methods") or {}
    if any(res.get("held_out") for res in methods.values()):
        head = ["method", *[LABELS[m] for m in METRICS]]
        rows = [
            [name, *[fmt((res.get("held_out") or {}).get(m)) for m in METRICS]]
            for name, res in methods.items()
        ]
        out.append(("Held-out probes only (not in the transfer set), exact match", head, rows))
    for name, res in methods.items():
        rel = res.get("by_relation") or {}
        if rel:
            head = ["relation", *[LABELS[m] for m in METRICS]]
            rows = [[r, *[fmt(v.get(m)) for m in METRICS]] for r, v in rel.items()]
            out.append((f"By relation: {name}", head, rows))
    for name, method_rows in (metrics.get("rows") or {}).items():
        shared = shared_locality_failures(method_rows)
        if shared:
            head = ["locality probe", "expected", "answered", "failed under edits"]
            out.append((f"Locality failures shared by several edits: {name}", head, shared))
    by_conf = {
        name: b
        for name, method_rows in (metrics.get("rows") or {}).items()
        if (b := locality_by_base_confidence(method_rows)) is not None
    }
    if by_conf:
        head = ["method"]
        head += [
            f"base p >= {lo:g}" if hi > 1 else f"base p {lo:g}-{hi:g}" for lo, hi in CONFIDENCE_BINS
        ]
        rows = [[name, *b] for name, b in by_conf.items()]
        title = "Locality by how sure the model was of the answer before the edit (probes)"
        out.append((title, head, rows))
    seq = metrics.get("sequential") or {}
    for name, pts in (seq.get("curves") or {}).items():
        head = [
            "batch",
            "edits so far",
            "edit success (all)",
            "edit success (so far)",
            "paraphrase",
            "locality",
        ]
        rows = [
            [
                str(p["batch"]),
                str(p["edits_so_far"]),
                *(
                    _f(p.get(k))
                    for k in ("edit_success", "edit_success_seen", "paraphrase", "locality")
                ),
            ]
            for p in pts
        ]
        out.append((f"Sequential: {name}", head, rows))
    ret = metrics.get("retention") or {}
    if ret.get("curves"):
        head = ["variant", "frozen layers", "edit success before", "after", "kept"]
        rows = []
        for name, pts in ret["curves"].items():
            kept = ret["kept"].get(name)
            rows.append(
                [
                    name,
                    str(ret["frozen_layers"].get(name) or "–"),
                    _f(pts[0]["edit_success"]),
                    _f(pts[-1]["edit_success"]),
                    "–" if kept is None else f"{100 * kept:.0f}%",
                ]
            )
        out.append((f"Retention ({ret['steps']} steps, lr {ret['lr']})", head, rows))
    return out


def shared_locality_failures(rows, *, min_edits: int = 2, limit: int = 12) -> list[list[str]]:
    """Locality probes a method got wrong under ``min_edits`` or more edits, most edits first:
    ``[prompt, expected, answered, count]``. One neighbour that several edits of a batch move
    (three edits off one object taking a fourth subject with them) costs the score once per
    edit; this names those neighbours instead of leaving them in the mean."""
    failed: dict[str, dict] = {}
    for r in rows:
        if r.get("kind") != "locality" or r.get("exact_match") or "prompt" not in r:
            continue
        f = failed.setdefault(r["prompt"], {"row": r, "edits": set()})
        f["edits"].add(r.get("edit_id"))
    ranked = sorted(failed.items(), key=lambda kv: (-len(kv[1]["edits"]), kv[0]))
    out = []
    for prompt, f in ranked:
        if len(f["edits"]) < min_edits or len(out) >= limit:
            break
        answer = " ".join(str(f["row"].get("generation", "")).split())
        out.append(
            [
                prompt,
                str(f["row"].get("target", "")),
                answer[:40] + ("…" if len(answer) > 40 else ""),
                str(len(f["edits"])),
            ]
        )
    return out


# how sure the pre-edit model was of a neighbour's answer (its probability, teacher-forced)
CONFIDENCE_BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, math.inf))


def locality_by_base_confidence(rows) -> list[str] | None:
    """Locality among the probes the pre-edit model answered with probability in each of
    :data:`CONFIDENCE_BINS` (``"0.71 (73)"``: score, and probes), or None when the rows carry
    no ``base_prob``. On a small real model most neighbours that count as known are answered
    right at low probability, and those are where edits spill: Gemma-3-270M answered 68 of
    132 held-out neighbourhood probes at under 0.25 (README, walkthrough 4)."""
    loc = [r for r in rows if r.get("kind") == "locality" and r.get("base_prob") is not None]
    if not loc:
        return None
    out = []
    for lo, hi in CONFIDENCE_BINS:
        sel = [r for r in loc if lo <= r["base_prob"] < hi]
        mean = sum(float(r["exact_match"]) for r in sel) / len(sel) if sel else None
        out.append(("–" if mean is None else f"{mean:.2f}") + f" ({len(sel)})")
    return out


def _f(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def render_markdown(metrics: Mapping) -> str:
    proto = metrics.get("protocol") or {}
    parts = ["# skedit evaluation report", "", "## Protocol", ""]
    parts += [f"- **{k}**: {v}" for k, v in proto.items()]
    for measure, title in TABLES.items():
        parts += ["", f"## {title}", "", _md_table(*_table(metrics, measure))]
    for title, h, r in _sections(metrics):
        parts += ["", f"## {title}", "", _md_table(h, r)]
    return "\n".join(parts) + "\n"


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:left}
th{background:#eee} dl{font-size:13px} dt{font-weight:bold} dd{margin:0 0 .4em 1.5em}
img{max-width:100%;display:block;margin:1em 0}
"""


def _html_table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def render_html(metrics: Mapping, images: Mapping[str, bytes] | None = None) -> str:
    e = html.escape
    images = plots(metrics) if images is None else images
    proto = metrics.get("protocol") or {}
    dl = "".join(f"<dt>{e(str(k))}</dt><dd>{e(str(v))}</dd>" for k, v in proto.items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>skedit report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>skedit evaluation report</h1>",
        f"<h2>Protocol</h2><dl id='protocol'>{dl}</dl>",
    ]
    for measure, title in TABLES.items():
        parts += [f"<h2>{e(title)}</h2>", _html_table(*_table(metrics, measure), "results")]
    titles = {
        "by_method": "Metrics by method",
        "by_kind": "By probe kind",
        "sequential": "Sequential editing",
        "retention": "Retention",
    }
    for key, png in images.items():
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h2>{e(titles.get(key, key))}</h2>"
            f"<img id='plot-{key}' alt='{e(key)}' src='data:image/png;base64,{b64}'>"
        )
    for title, h, r in _sections(metrics):
        parts += [f"<h2>{e(title)}</h2>", _html_table(h, r)]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | os.PathLike, metrics: Mapping) -> dict[str, Path]:
    """Write metrics.json, report.md and report.html into ``run_dir``; return their paths."""
    run_dir = Path(run_dir)
    return {
        "metrics": atomic_write_json(RunDir(run_dir).metrics, metrics),
        "markdown": atomic_write_text(run_dir / "report.md", render_markdown(metrics)),
        "html": atomic_write_text(run_dir / "report.html", render_html(metrics)),
    }
