"""Causal tracing (Meng et al., 2022): which layers, at which tokens, carry a fact.

Run the prompt clean, then with noise added to the subject's token embeddings (the model
loses the fact), then corrupted again but with one hidden state — block ``l``'s output at
token ``t``, or only its MLP output — put back to its clean value. The probability of the
clean answer that this one restored state brings back is its *indirect effect*; large effects
at the subject's last token mark the layers ROME and MEMIT should edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from skedit.pipelines.editors.ops import _hidden, _replace_hidden, edit_prompt, subject_span
from skedit.prompts.schema import Edit
from skedit.sft import arch


@dataclass
class Trace:
    """The indirect effects for one prompt; ``effects[kind][layer][token]`` is a probability."""

    edit_id: str
    prompt: str
    subject: str
    answer: str  # the model's own clean answer token (what is traced)
    tokens: list[str]
    subject_first: int
    subject_last: int
    p_clean: float
    p_corrupt: float
    effects: dict[str, list[list[float]]]

    def at_subject_last(self, kind: str) -> list[float]:
        """Indirect effect per layer at the subject's last token."""
        return [row[self.subject_last] - self.p_corrupt for row in self.effects[kind]]


def _clean_states(model, x: torch.Tensor, modules) -> dict[int, torch.Tensor]:
    """Each module's clean output ``(tokens, d)`` on ``x`` (one forward pass)."""
    clean: dict[int, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _a, o, i=i: clean.__setitem__(i, _hidden(o)[0]))
        for i, m in enumerate(modules)
    ]
    try:
        model(input_ids=x)
    finally:
        for h in handles:
            h.remove()
    return clean


def noise_level(model, factor: float) -> float:
    """``factor`` × the standard deviation of the token embeddings (ROME uses 3)."""
    return factor * float(arch.embedding(model).weight.detach().float().std())


@torch.no_grad()
def trace_edit(
    model,
    tokenizer,
    edit: Edit,
    *,
    samples: int = 10,
    noise: float = 3.0,
    kinds: Sequence[str] = ("hidden", "mlp"),
    seed: int = 0,
) -> Trace:
    """Causal trace of ``edit``'s prompt (the subject is corrupted, the clean answer traced)."""
    prompt = edit_prompt(edit)
    ids, first, last = subject_span(tokenizer, prompt, edit.subject)
    n_tok, n_layers = len(ids), arch.num_layers(model)
    x = torch.tensor([ids], device=model.device)
    clean_logits = model(input_ids=x).logits[0, -1].float()
    answer = int(clean_logits.argmax())
    p_clean = float(torch.softmax(clean_logits, -1)[answer])

    gen = torch.Generator().manual_seed(seed)
    d = arch.embedding(model).weight.shape[1]
    sigma = noise_level(model, noise)
    eps = (torch.randn(samples, last - first + 1, d, generator=gen) * sigma).to(model.device)

    def corrupt(_m, _a, out, rows: int):
        out = out.clone()
        out[:, first : last + 1] += eps.repeat(rows // samples, 1, 1).to(out.dtype)
        return out

    def run(rows: int, hooks) -> torch.Tensor:
        handles = [
            arch.embedding(model).register_forward_hook(lambda m, a, o: corrupt(m, a, o, rows))
        ]
        handles += [mod.register_forward_hook(fn) for mod, fn in hooks]
        try:
            logits = model(input_ids=x.expand(rows, -1)).logits[:, -1].float()
        finally:
            for h in handles:
                h.remove()
        return torch.softmax(logits, -1)[:, answer]

    p_corrupt = float(run(samples, []).mean())
    effects: dict[str, list[list[float]]] = {}
    for kind in kinds:
        # clean states of every layer for this kind, recorded once
        modules = [
            arch.block(model, i) if kind == "hidden" else arch.mlp_out(model, i)
            for i in range(n_layers)
        ]
        clean = _clean_states(model, x, modules)
        grid = []
        for layer, module in enumerate(modules):
            # one batch per layer: rows [t*samples:(t+1)*samples] restore token t
            def restore(_m, _a, out, state=clean[layer]):
                h = _hidden(out).clone()
                for t in range(n_tok):
                    h[t * samples : (t + 1) * samples, t] = state[t]
                return _replace_hidden(out, h)

            probs = run(n_tok * samples, [(module, restore)]).view(n_tok, samples).mean(-1)
            grid.append([float(p) for p in probs])
        effects[kind] = grid
    return Trace(
        edit_id=edit.id,
        prompt=prompt,
        subject=edit.subject,
        answer=tokenizer.decode([answer]),
        tokens=[tokenizer.decode([i]) for i in ids],
        subject_first=first,
        subject_last=last,
        p_clean=p_clean,
        p_corrupt=p_corrupt,
        effects=effects,
    )


def trace_edits(
    model, tokenizer, edits: Sequence[Edit], *, progress: bool = True, **kw
) -> list[Trace]:
    """:func:`trace_edit` for each edit, with a progress bar."""
    bar = tqdm(edits, desc="causal trace", unit="prompt", disable=not progress, leave=False)
    return [trace_edit(model, tokenizer, e, **kw) for e in bar]


def summarise(traces: Sequence[Trace], kind: str = "hidden", top: int = 3) -> dict:
    """Mean indirect effect per layer at the subject's last token, and suggested layers:
    ROME's = the layer (not the last) with the largest effect; MEMIT's = the ``top`` best
    layers up to it."""
    n_layers = len(traces[0].effects[kind])
    mean = [sum(t.at_subject_last(kind)[i] for t in traces) / len(traces) for i in range(n_layers)]
    ranked = sorted(range(n_layers), key=lambda i: -mean[i])
    # a change at the subject's token must still be read by a later layer's attention, so
    # the last layer is never suggested
    editable = [i for i in ranked if i < n_layers - 1] or ranked
    best = editable[0]
    memit = sorted(i for i in editable[:top] if i <= best) or [best]
    return {
        "kind": kind,
        "prompts": len(traces),
        "effect_by_layer": [round(v, 4) for v in mean],
        "ranked_layers": ranked,
        "rome_layer": best,
        "memit_layers": memit,
        "p_clean": round(sum(t.p_clean for t in traces) / len(traces), 4),
        "p_corrupt": round(sum(t.p_corrupt for t in traces) / len(traces), 4),
    }


def plot_traces(traces: Sequence[Trace], path: str | Path, *, max_prompts: int = 4) -> Path:
    """Heatmaps (layer × token) of the first prompts, one row per trace kind, and the mean
    effect per layer at the subject's last token; saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(traces[:max_prompts])
    kinds = list(shown[0].effects)
    fig, axes = plt.subplots(
        len(kinds) + 1,
        len(shown),
        figsize=(3.2 * len(shown), 2.8 * (len(kinds) + 1)),
        squeeze=False,
    )
    for col, tr in enumerate(shown):
        labels = [
            f"{tok}*" if tr.subject_first <= i <= tr.subject_last else tok
            for i, tok in enumerate(tr.tokens)
        ]
        for row, kind in enumerate(kinds):
            ax = axes[row][col]
            grid = torch.tensor(tr.effects[kind]).T  # (tokens, layers)
            im = ax.imshow(
                grid.numpy(),
                cmap="Purples" if kind == "hidden" else "Greens",
                aspect="auto",
                vmin=0,
            )
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.set_xticks(range(grid.shape[1]))
            ax.set_xlabel("layer", fontsize=8)
            ax.set_title(f"{kind}: p({tr.answer.strip()})", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.05)
        axes[-1][col].axis("off")
    ax = axes[-1][0]
    ax.axis("on")
    for kind in kinds:
        ax.plot(summarise(traces, kind)["effect_by_layer"], marker="o", label=kind)
    ax.set_xticks(range(len(shown[0].effects[kinds[0]])))
    ax.set_xlabel("layer")
    ax.set_ylabel("indirect effect")
    ax.set_title(f"subject's last token, mean of {len(traces)}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def traces_json(traces: Sequence[Trace]) -> list[dict]:
    return [asdict(t) for t in traces]
