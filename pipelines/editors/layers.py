"""Where a model keeps its MLP memories: the modules locate-then-edit methods change.

ROME, MEMIT and AlphaEdit write into the output projection of a transformer block's MLP
(``down_proj`` in Llama, ``c_proj`` in GPT-2). Which module that is follows from the model's
architecture (``config.model_type``), never from substrings of its name: a fine-tune called
"my-gpt2-llama" is still whatever its config says.

All weights are handled in the ``(out, in)`` convention of ``nn.Linear``; GPT-2's ``Conv1D``
stores the transpose, and :func:`weight_out_in` / :func:`add_to_weight` hide that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from skedit.prompts.errors import SkeditError


@dataclass(frozen=True)
class Architecture:
    """Module paths of one model family; ``{i}`` is the layer index."""

    blocks: str  # the ModuleList of transformer blocks
    mlp_out: str  # the MLP output projection inside block {i}
    embed: str  # token embedding
    transposed: bool = False  # True for GPT-2's Conv1D (weight stored as (in, out))


_LLAMA = Architecture("model.layers", "model.layers.{i}.mlp.down_proj", "model.embed_tokens")
_GPT2 = Architecture("transformer.h", "transformer.h.{i}.mlp.c_proj", "transformer.wte", True)

_LLAMA_STYLE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2", "phi3")

ARCHITECTURES: dict[str, Architecture] = {
    **dict.fromkeys(_LLAMA_STYLE, _LLAMA),
    "gpt2": _GPT2,
    "gptj": Architecture("transformer.h", "transformer.h.{i}.mlp.fc_out", "transformer.wte"),
    "gpt_neox": Architecture(
        "gpt_neox.layers", "gpt_neox.layers.{i}.mlp.dense_4h_to_h", "gpt_neox.embed_in"
    ),
}


def architecture(model: nn.Module) -> Architecture:
    """The module layout of ``model``, from ``model.config.model_type``."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    arch = ARCHITECTURES.get(str(model_type))
    if arch is None:
        raise SkeditError(
            f"locate-then-edit methods (ROME/MEMIT/AlphaEdit) do not support model_type "
            f"{model_type!r}",
            hint=f"supported model types: {', '.join(sorted(ARCHITECTURES))}; add an "
            "Architecture entry in skedit.pipelines.editors.layers for another family",
        )
    return arch


def _get(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        raise SkeditError(
            f"model of type {model.config.model_type!r} has no module {path!r}",
            hint="the model's structure differs from its family's usual layout",
        ) from exc


def num_layers(model: nn.Module) -> int:
    """Number of transformer blocks."""
    return len(_get(model, architecture(model).blocks))


def check_layers(model: nn.Module, layers: list[int]) -> list[int]:
    """``layers`` with negative indices resolved; a clear error for out-of-range ones."""
    n = num_layers(model)
    out = []
    for layer in layers:
        resolved = layer + n if layer < 0 else layer
        if not 0 <= resolved < n:
            raise SkeditError(
                f"layer {layer} does not exist: the model has {n} layers (0..{n - 1})",
                field="layers",
                hint="set the editing layer(s) in the hparams; `skedit trace` suggests some",
            )
        out.append(resolved)
    return out


def block(model: nn.Module, layer: int) -> nn.Module:
    """Transformer block ``layer`` (its output is the residual stream after that layer)."""
    return _get(model, architecture(model).blocks)[layer]


def mlp_out_name(model: nn.Module, layer: int) -> str:
    """Dotted name of the MLP output projection of ``layer``."""
    return architecture(model).mlp_out.format(i=layer)


def mlp_out(model: nn.Module, layer: int) -> nn.Module:
    """The MLP output projection of ``layer`` (its input is the key, its output the value)."""
    return _get(model, mlp_out_name(model, layer))


def embedding(model: nn.Module) -> nn.Module:
    """The token embedding module."""
    return _get(model, architecture(model).embed)


def weight_out_in(model: nn.Module, layer: int) -> torch.Tensor:
    """The MLP output projection's weight as ``(out, in)`` (a view, not a copy)."""
    w = mlp_out(model, layer).weight
    return w.T if architecture(model).transposed else w


@torch.no_grad()
def add_to_weight(model: nn.Module, layer: int, delta: torch.Tensor) -> None:
    """Add ``delta`` (shape ``(out, in)``) to the MLP output projection of ``layer``."""
    w = mlp_out(model, layer).weight
    d = delta.T if architecture(model).transposed else delta
    w.add_(d.to(device=w.device, dtype=w.dtype))


def key_size(model: nn.Module, layer: int) -> int:
    """Dimension of the keys (the MLP hidden size feeding the output projection)."""
    return weight_out_in(model, layer).shape[1]
