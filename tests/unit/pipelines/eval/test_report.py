"""The report: tables with CIs, plots embedded, opened in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from skedit.pipelines.eval.report import fmt, render_markdown, terminal_table, write_report

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _entry(mean, lo, hi, n=40):
    return {
        "mean": mean,
        "n": n,
        "ci": [lo, hi],
        "token_accuracy": {"mean": mean, "n": n, "ci": [lo, hi]},
    }


def _metrics() -> dict:
    methods = {}
    for name, es, loc in [
        ("skedit", 0.97, 0.98),
        ("base", 0.02, 1.0),
        ("prompt", 0.99, 0.9),
        ("ft-m", 1.0, 0.6),
    ]:
        methods[name] = {
            "edit_success": _entry(es, es - 0.03, min(1, es + 0.02)),
            "paraphrase": _entry(es * 0.95, es * 0.9, es),
            "portability": _entry(0.5, 0.4, 0.6),
            "locality": _entry(loc, loc - 0.05, loc),
            "fluency": {"mean": 512.3, "n": 40, "ci": [500.1, 520.2]},
            "perplexity": {"mean": 3.21, "n": 900, "ci": [3.1, 3.3]},
            "by_relation": {"birthplace": {"edit_success": _entry(es, es - 0.1, es)}},
        }
    rows = {
        name: [
            {"kind": k, "subkind": s, "exact_match": 1.0, "edit_id": "e"}
            for k, s in [("edit", None), ("locality", "same_subject")]
        ]
        for name in methods
    }
    pts = [
        {
            "batch": i,
            "edits_so_far": 10 * i,
            "edit_success": 0.3 * i,
            "edit_success_seen": 0.9,
            "paraphrase": 0.2 * i,
            "portability": 0.1,
            "locality": 1 - 0.1 * i,
        }
        for i in range(4)
    ]
    ret = [{"step": s, "edit_success": 1 - s / 100} for s in (0, 25, 50)]
    return {
        "protocol": {"locality": "agreement with the pre-edit model", "model": "/m"},
        "methods": methods,
        "rows": rows,
        "sequential": {"k": 3, "batch_sizes": [10, 10, 10], "curves": {"skedit": pts}},
        "retention": {
            "steps": 50,
            "lr": 3e-4,
            "curves": {"skedit": ret, "ft-m": ret},
            "frozen_layers": {"skedit": [], "ft-m": []},
            "kept": {"skedit": 0.5, "ft-m": 0.5},
        },
    }


def test_tables_show_means_with_cis():
    assert fmt(_entry(0.95, 0.91, 0.98)) == "0.950 [0.910, 0.980]"
    assert fmt({"mean": None, "n": 0, "ci": None}) == "–"
    md = render_markdown(_metrics())
    assert (
        md.index("## Protocol") < md.index("## Results: greedy") < md.index("## Results: teacher")
    )
    assert "| skedit | 0.970 [0.940, 0.990]" in md
    assert "## Sequential: skedit" in md and "## Retention (50 steps" in md
    term = terminal_table(_metrics())
    assert term.splitlines()[2].startswith("skedit") and "0.97 [0.94,0.99]" in term
    assert "approved prompt" not in term


def test_terminal_table_says_how_many_edits_were_never_approved():
    m = _metrics()
    m["protocol"] = {**m.get("protocol", {}), "n_edits": 40, "n_edits_approved": 36}
    assert "4 of 40 edits were in no approved prompt" in terminal_table(m)
    m["protocol"]["n_edits_approved"] = 40
    assert "approved prompt" not in terminal_table(m)


def test_report_names_the_neighbours_several_edits_moved():
    m = _metrics()

    def loc(edit, prompt, ok, answer):
        return {
            "kind": "locality",
            "subkind": "neighborhood",
            "edit_id": edit,
            "prompt": prompt,
            "target": "Antarctica",
            "generation": answer,
            "exact_match": float(ok),
        }

    glacier = "Northwind Glacier belongs to the continent of"
    m["rows"]["skedit"] = [
        *(loc(e, glacier, False, " Europe. It is a glacier") for e in ("e1", "e2", "e3")),
        loc("e4", glacier, True, " Antarctica."),
        loc("e1", "Mount Erebus is in", False, " Asia."),  # moved under one edit only
        {"kind": "edit", "edit_id": "e1", "prompt": glacier, "exact_match": 0.0},
    ]
    md = render_markdown(m)
    assert "## Locality failures shared by several edits: skedit" in md
    assert f"| {glacier} | Antarctica | Europe. It is a glacier | 3 |" in md
    assert "Mount Erebus" not in md
    assert "Locality failures shared by several edits: base" not in md


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_opens_in_headless_chromium(tmp_path):
    paths = write_report(tmp_path, _metrics())
    html = paths["html"].read_text()
    # a probe page: the report plus a script that records how each image decoded
    probe = tmp_path / "probe.html"
    probe.write_text(
        html.replace(
            "</body>",
            "<script>window.onload=()=>{document.body.dataset"
            ".decoded=[...document.images].map(i=>i.id+':'+i.naturalWidth)"
            ".join(' ')}</script></body>",
        )
    )
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*common, "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "<table" in dom and "skedit" in dom and "0.970 [0.940, 0.990]" in dom
    decoded = dict(
        x.rsplit(":", 1) for x in dom.split('data-decoded="', 1)[1].split('"')[0].split()
    )
    assert set(decoded) == {"plot-by_method", "plot-by_kind", "plot-sequential", "plot-retention"}
    assert all(int(w) > 100 for w in decoded.values())  # every PNG really decoded

    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,1400", paths["html"].as_uri()],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.exists()
    import matplotlib.image as mpimg
    import numpy as np

    img = (mpimg.imread(shot)[..., :3] * 255).astype(int)  # (H, W, 3)
    # the first plot's bars are matplotlib's blue (31, 119, 180): the plot is on screen
    blue = (np.abs(img - np.array([31, 119, 180])).sum(-1) < 30).sum()
    assert blue > 500
    # the results table draws dark text below the header
    assert (img.sum(-1) < 150).sum() > 2000
