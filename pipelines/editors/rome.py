"""ROME (Meng et al., 2022): one rank-one update of one MLP output projection per edit.

For an edit with key ``k*`` (the subject's last token at the edit layer) and value change
``δ`` (found by :func:`~skedit.pipelines.editors.ops.optimise_values`), the update

    ΔW = δ (C⁻¹ k*)ᵀ / (k*ᵀ C⁻¹ k*)

gives ``W' k* = W k* + δ`` exactly while changing the outputs for keys ``k`` in proportion to
``kᵀ C⁻¹ k*`` — small for the directions ordinary text (the corpus behind ``C``) uses. Edits
are applied one after another, each on the already edited model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from skedit.pipelines.editors.covariance import key_second_moments
from skedit.pipelines.editors.ops import (
    EditorHparams,
    build_batch,
    coerce_hparams,
    optimise_values,
    regularised_inverse,
    subject_keys,
)
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit
from skedit.sft import arch
from skedit.sft.modelops import sample_prefixes


@dataclass
class RomeHparams(EditorHparams):
    """ROME settings; defaults suit the synthetic world model (see recipes/world.yaml)."""

    method = "rome"  # class attribute, not a field
    # the transformer block whose MLP output projection is edited (negative: from the end). The
    # world model reads its facts last at the last block's MLP (see recipes/world.yaml)
    layer: int = -1
    # weight of earlier edits' keys in C (0 = published ROME). Keys of names the corpus never
    # shows are nearly identical, so a later rank-one update overwrites an earlier one; with
    # memory, C + edit_memory · Σ k kᵀ over earlier edits (C is a mean, so 1 weighs an earlier
    # key like the whole corpus)
    edit_memory: float = 0.1


def load_recipe(recipe: str, method: str) -> dict:
    """A method's section of a recipe: a model family (``world``, ``llama``, ``gemma3``,
    ``gpt2`` → ``pipelines/recipes/<family>.yaml``) or the path of a YAML file."""
    from skedit.pipelines.run.recipes import load_recipe as read_recipe

    data = read_recipe(recipe, field="recipe")
    if method not in data:
        raise SkeditError(f"recipe {recipe!r} has no section {method!r}", file=str(recipe))
    return dict(data[method] or {})


def resolve_corpus(model, tokenizer, hp: EditorHparams):
    """The corpus behind the key statistics: ``hp.corpus`` if given (the evaluation passes the
    one a model's source provides, e.g. the synthetic world's text), else text sampled from the
    model itself (a stand-in that needs no data; name a real corpus for real models)."""
    from skedit.pipelines.editors.covariance import Corpus

    if hp.corpus:
        return hp.corpus
    n = min(hp.samples, 256)
    texts = []
    for start in range(0, n, 64):
        texts += sample_prefixes(model, tokenizer, min(64, n - start), 32, hp.seed + 1 + start)
    return Corpus(f"model-samples(n={n},len=32,seed={hp.seed})", tuple(texts))


def key_stats(model, tokenizer, layers: list[int], hp: EditorHparams) -> dict:
    """The cached key second moments ``E[k kᵀ]`` per layer, for the corpus ``hp`` names."""
    return key_second_moments(
        model,
        tokenizer,
        layers,
        resolve_corpus(model, tokenizer, hp),
        samples=hp.samples,
        max_length=hp.max_length,
        cache_dir=hp.cache_dir,
        progress=hp.progress,
    )


def key_inverse(model, tokenizer, layers: list[int], hp: EditorHparams) -> dict:
    """``C⁻¹`` (float64) per layer, from the cached key statistics."""
    stats = key_stats(model, tokenizer, layers, hp)
    return {layer: regularised_inverse(c, hp.ridge) for layer, c in stats.items()}


def rome_update(k: torch.Tensor, delta: torch.Tensor, c_inv: torch.Tensor) -> torch.Tensor:
    """The rank-one ``ΔW`` ``(d, m)`` that maps key ``k`` ``(m,)`` to ``W k + δ``."""
    u = c_inv @ k.double()  # (m,)
    return torch.outer(delta.double(), u) / torch.dot(u, k.double())


def remember_key(c_inv: torch.Tensor, k: torch.Tensor, weight: float) -> torch.Tensor:
    """``(C + w k kᵀ)⁻¹`` from ``C⁻¹`` (Sherman–Morrison: O(m²) instead of a new inverse)."""
    u = c_inv @ k.double()
    return c_inv - weight * torch.outer(u, u) / (1.0 + weight * torch.dot(k.double(), u))


def apply_rome(model, tokenizer, edits: list[Edit], hparams=None):
    """Edit ``model`` in place with ROME, one edit after another; returns the model.

    ``hparams``: :class:`RomeHparams`, a dict of its fields (``recipe: llama`` starts from a
    recipe), or None for the world-model defaults. ``model.skedit_edit_log`` gets one record
    per edit (layer, steps, final NLL, seconds).
    """
    hp = coerce_hparams(RomeHparams, hparams)
    (layer,) = arch.check_layers(model, [hp.layer])
    if not edits:
        return model
    c_inv = key_inverse(model, tokenizer, [layer], hp)[layer].to(model.device)
    memory = getattr(model, "skedit_rome_keys", {}).get(layer) if hp.edit_memory else None
    for k_prev in memory if memory is not None else []:
        c_inv = remember_key(c_inv, k_prev.to(c_inv.device), hp.edit_memory)
    seen = [] if memory is None else list(memory)
    prefixes = sample_prefixes(model, tokenizer, hp.context_prefixes, hp.prefix_tokens, hp.seed)
    module = arch.mlp_out(model, layer)
    log = getattr(model, "skedit_edit_log", [])
    for edit in tqdm(edits, desc="ROME", unit="edit", disable=not hp.progress, leave=False):
        t0 = time.perf_counter()
        batch = build_batch(tokenizer, [edit], prefixes, hp.kl_prompt, model.device, hp.fact_token)
        k = subject_keys(model, batch, layer, 1)[0]
        delta, info = optimise_values(model, batch, module, 1, hp)
        arch.add_to_weight(model, layer, rome_update(k, delta[0], c_inv))
        if hp.edit_memory:
            c_inv = remember_key(c_inv, k, hp.edit_memory)
            seen.append(k.detach().cpu())
        log.append(
            {
                "method": "rome",
                "edit": edit.id,
                "layer": layer,
                **info,
                "seconds": round(time.perf_counter() - t0, 4),
            }
        )
    model.skedit_edit_log = log
    if hp.edit_memory:
        model.skedit_rome_keys = {**getattr(model, "skedit_rome_keys", {}), layer: seen}
    return model
