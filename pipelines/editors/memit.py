"""MEMIT (Meng et al., 2023) and AlphaEdit (Fang et al., 2025): many edits at once, the
change spread over several layers.

For a batch of edits, ``δ_i`` is the residual-stream change at the last edit layer (at each
subject's last token) that makes the model give target ``i``. Then, from the first edit layer
to the last, with ``K`` the edits' keys ``(m, n)`` and ``R`` the part of the remaining residual
change this layer takes on ``(d, n)``:

    MEMIT:      ΔW = R Kᵀ (λ C + K Kᵀ)⁻¹
    AlphaEdit:  ΔW = Xᵀ,  X = (P (K Kᵀ + K_p K_pᵀ) + α I)⁻¹ P K Rᵀ

``C`` is the keys' second moment on a text corpus; ``P`` projects onto the directions that
corpus keys (nearly) never use, so AlphaEdit's ``ΔW k ≈ 0`` for preserved keys: ``X`` lies in
the range of ``P`` whenever ``α > 0`` (from the equation, ``α X = P(...)``). ``K_p`` are the keys
of earlier AlphaEdit batches on the same model, so sequential batches do not undo each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from skedit.pipelines.editors.ops import (
    Batch,
    EditorHparams,
    build_batch,
    coerce_hparams,
    optimise_values,
    subject_keys,
    subject_outputs,
)
from skedit.pipelines.editors.rome import key_stats
from skedit.prompts.schema import Edit
from skedit.sft import arch
from skedit.sft.modelops import sample_prefixes


@dataclass
class MemitHparams(EditorHparams):
    """MEMIT settings; defaults suit the synthetic world model (see recipes/world.yaml)."""

    method = "memit"
    layers: list[int] = field(
        default_factory=lambda: [-2, -1]
    )  # edit layers (negative: from the end)
    mom2_weight: float = 10.0  # λ: how many "corpus keys" C stands for against the edits
    batch_size: int = 100  # edits per MEMIT batch (larger batches are split)
    # edits whose target values are optimised together: each edit's value is optimised alone
    # in effect (its own rows, element-wise Adam), so this only bounds memory: 60 SmolLM2 edits
    # at once back-propagate 660 rows through 23 layers, 21 GB
    value_batch: int = 8


@dataclass
class AlphaEditHparams(MemitHparams):
    """AlphaEdit = MEMIT with the update projected on the null space of corpus keys."""

    method = "alphaedit"
    nullspace_threshold: float = 1e-3  # eigenvalues of C below this × the largest are "null"
    # α: ridge on the update (also what keeps it inside the null space); trades edit success
    # for locality on the world model: 1 -> .50/.94, .3 -> .89/.80 (recipes/world.yaml)
    l2: float = 0.3


def null_space_projector(c: torch.Tensor, threshold: float) -> torch.Tensor:
    """``P = U₀ U₀ᵀ`` over the eigenvectors of ``C`` whose eigenvalue is below
    ``threshold`` × the largest one (float64, ``(m, m)``)."""
    vals, vecs = torch.linalg.eigh(c.double())
    small = vecs[:, vals < threshold * vals.max()]
    return small @ small.T


def _targets(model, batch: Batch, layers: list[int], n: int, hp: EditorHparams):
    """Residual change wanted at the last edit layer: ``(z, info)`` with ``z`` ``(n, d)`` the
    target hidden state (current + δ)."""
    last = arch.block(model, layers[-1])
    base = subject_outputs(model, batch, last, n)
    delta, info = optimise_values(model, batch, last, n, hp)
    return base + delta, info


def _spread(model, batch, layers, z, n, solve) -> None:
    """Write the residual change into the layers, first to last (MEMIT's Algorithm 1)."""
    last = arch.block(model, layers[-1])
    for j, layer in enumerate(layers):
        keys = subject_keys(model, batch, layer, n).double()  # (n, m)
        cur = subject_outputs(model, batch, last, n).double()  # (n, d)
        resid = (z.double() - cur) / (len(layers) - j)  # this layer's share
        resid = _as_mlp_output(model, batch, layer, resid, n)
        delta = solve(layer, keys.T, resid.T)  # (d, m)
        arch.add_to_weight(model, layer, delta)


def _as_mlp_output(model, batch, layer: int, resid: torch.Tensor, n: int) -> torch.Tensor:
    """The change of ``layer``'s MLP output that moves the residual stream by ``resid``.

    MEMIT's update writes into the MLP output projection, whose output is the residual change
    where the block adds it as it is (Llama, GPT-2). Gemma 2/3 normalise it first,
    ``h + g * y / rms(y)``: written as it is, a residual-sized change is a large share of a
    small ``y``, and after the norm it replaces the MLP's output for every input (60 edits on
    Gemma-3-270M left no edit and no neighbour right). Linearised at the edits' own ``y``:
    ``Δy = rms(y) * Δh / g`` (ridge where a gain is near zero).
    """
    norm = arch.mlp_post_norm(model, layer)
    if norm is None:
        return resid
    y = subject_outputs(model, batch, arch.mlp_out(model, layer), n).double()  # (n, d)
    rms = y.pow(2).mean(-1, keepdim=True).sqrt()
    with torch.no_grad():  # an RMS norm of ones is its gain
        probe = torch.ones(1, resid.shape[-1], dtype=norm.weight.dtype, device=norm.weight.device)
        gain = norm(probe).double().reshape(-1).to(resid.device)
    ridge = 1e-2 * gain.pow(2).mean()
    return resid * rms * gain / (gain.pow(2) + ridge)


def _run(model, tokenizer, edits, hp, solve_for, name):
    layers = sorted(arch.check_layers(model, list(hp.layers)))
    if not edits:
        return model
    stats = key_stats(model, tokenizer, layers, hp)
    solve = solve_for(stats)
    prefixes = sample_prefixes(model, tokenizer, hp.context_prefixes, hp.prefix_tokens, hp.seed)
    log = getattr(model, "skedit_edit_log", [])
    chunks = [edits[i : i + hp.batch_size] for i in range(0, len(edits), hp.batch_size)]
    for chunk in tqdm(chunks, desc=name, unit="batch", disable=not hp.progress, leave=False):
        t0 = time.perf_counter()
        batch = build_batch(tokenizer, chunk, prefixes, hp.kl_prompt, model.device, hp.fact_token)
        zs, infos = [], []
        step = max(1, hp.value_batch)
        for g in range(0, len(chunk), step):
            part = chunk[g : g + step]
            sub = build_batch(tokenizer, part, prefixes, hp.kl_prompt, model.device, hp.fact_token)
            z_part, info_part = _targets(model, sub, layers, len(part), hp)
            zs.append(z_part)
            infos.append(info_part)
        z = torch.cat(zs)
        info = {
            "steps": max(i["steps"] for i in infos),
            "nll": sum(i["nll"] for i in infos) / len(infos),
        }
        _spread(model, batch, layers, z, len(chunk), solve)
        seconds = time.perf_counter() - t0
        log += [
            {
                "method": name,
                "edit": e.id,
                "layers": layers,
                **info,
                "seconds": round(seconds / len(chunk), 4),
            }
            for e in chunk
        ]
    model.skedit_edit_log = log
    return model


def apply_memit(model, tokenizer, edits: list[Edit], hparams=None):
    """Edit ``model`` in place with MEMIT (batches of ``hp.batch_size``); returns the model."""
    hp = coerce_hparams(MemitHparams, hparams)

    def solve_for(stats):
        def solve(layer, k, r):  # k (m, n), r (d, n) → ΔW (d, m)
            c = stats[layer].to(k.device, torch.float64)
            a = hp.mom2_weight * c + k @ k.T  # (m, m), symmetric
            a = a + 1e-8 * float(torch.trace(a)) / a.shape[0] * torch.eye(
                a.shape[0], dtype=a.dtype, device=a.device
            )
            return torch.linalg.solve(a, k @ r.T).T

        return solve

    return _run(model, tokenizer, edits, hp, solve_for, "memit")


def apply_alphaedit(model, tokenizer, edits: list[Edit], hparams=None):
    """Edit ``model`` in place with AlphaEdit (MEMIT projected on the null space of corpus
    keys); keys of earlier AlphaEdit calls on this model are kept on it
    (``model.skedit_alphaedit_keys``) so sequential batches preserve each other."""
    hp = coerce_hparams(AlphaEditHparams, hparams)
    previous: dict[int, torch.Tensor] = getattr(model, "skedit_alphaedit_keys", {})

    def solve_for(stats):
        projectors = {
            layer: null_space_projector(c, hp.nullspace_threshold) for layer, c in stats.items()
        }

        def solve(layer, k, r):
            p = projectors[layer].to(k.device)
            m = p.shape[0]
            kp = previous.get(layer, torch.zeros(m, m, dtype=torch.float64)).to(k.device)
            a = p @ (k @ k.T + kp) + hp.l2 * torch.eye(m, dtype=p.dtype, device=p.device)
            x = torch.linalg.solve(a, p @ k @ r.T)  # (m, d), inside range(P)
            previous[layer] = (kp + k @ k.T).cpu()
            return x.T

        return solve

    _run(model, tokenizer, edits, hp, solve_for, "alphaedit")
    model.skedit_alphaedit_keys = previous
    return model
