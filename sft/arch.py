"""Where things are inside a model: the one module that knows module names per model family.

Transformer blocks, their count, the MLP input/output projections, attention, the token
embedding, and the module names LoRA and fine-tuning target. The family follows from the
model's ``config.model_type``, never from substrings of its name: a fine-tune called
"my-gpt2-llama" is still whatever its config says. A family's blocks may sit under a wrapper
(Gemma 3's multimodal ``model.language_model.layers``): the first path that exists is used.

Used by the locate-then-edit editors (ROME, MEMIT, AlphaEdit write into the MLP output
projection: ``down_proj`` in Llama and Gemma 3, ``c_proj`` in GPT-2), the fine-tuning
baselines, and the training scope (which layers train, which modules get LoRA adapters).

All weights are handled in the ``(out, in)`` convention of ``nn.Linear``; GPT-2's ``Conv1D``
stores the transpose, and :func:`weight_out_in` / :func:`add_to_weight` hide that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from skedit.prompts.errors import SkeditError


@dataclass(frozen=True)
class Architecture:
    """Module paths of one model family: ``blocks`` from the model, the rest inside a block."""

    blocks: str  # the ModuleList of transformer blocks
    mlp_out: str  # the MLP output projection inside a block
    mlp_in: tuple[str, ...]  # the MLP input projection(s) inside a block
    attention: str  # the attention module inside a block
    embed: str  # token embedding
    lora_targets: tuple[str, ...]  # module names that get LoRA adapters by default
    transposed: bool = False  # True for GPT-2's Conv1D (weight stored as (in, out))
    wrapped_blocks: tuple[str, ...] = ()  # other places the blocks are found (wrappers)

    @property
    def ft_modules(self) -> tuple[str, ...]:
        """Parameter-name parts fine-tuning baselines train by default: the MLP output."""
        return (self.mlp_out,)


LLAMA = Architecture(
    blocks="model.layers",
    mlp_out="mlp.down_proj",
    mlp_in=("mlp.gate_proj", "mlp.up_proj"),
    attention="self_attn",
    embed="model.embed_tokens",
    lora_targets=("gate_proj", "up_proj", "down_proj"),
    wrapped_blocks=("model.language_model.layers", "language_model.model.layers"),
)
GPT2 = Architecture(
    blocks="transformer.h",
    mlp_out="mlp.c_proj",
    mlp_in=("mlp.c_fc",),
    attention="attn",
    embed="transformer.wte",
    lora_targets=("c_fc", "c_proj"),
    transposed=True,
)
GPTJ = Architecture(
    "transformer.h", "mlp.fc_out", ("mlp.fc_in",), "attn", "transformer.wte", ("fc_in", "fc_out")
)
GPT_NEOX = Architecture(
    "gpt_neox.layers",
    "mlp.dense_4h_to_h",
    ("mlp.dense_h_to_4h",),
    "attention",
    "gpt_neox.embed_in",
    ("dense_h_to_4h", "dense_4h_to_h"),
)

_LLAMA_STYLE = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "olmo",
    "olmo2",
    "phi3",
    "smollm3",
)

ARCHITECTURES: dict[str, Architecture] = {
    **dict.fromkeys(_LLAMA_STYLE, LLAMA),
    "gpt2": GPT2,
    "gptj": GPTJ,
    "gpt_neox": GPT_NEOX,
}

# block containers of unknown families, for naming layers only (``…layers.3.…``, ``…h.3.…``)
_ANY_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


def model_type(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def family(model: nn.Module) -> Architecture | None:
    """The module layout of ``model``'s family, or None for a family not listed here."""
    return ARCHITECTURES.get(str(model_type(model)))


def architecture(model: nn.Module) -> Architecture:
    """The module layout of ``model``, from ``model.config.model_type`` (an error if unknown)."""
    arch = family(model)
    if arch is None:
        raise SkeditError(
            f"locate-then-edit methods (ROME/MEMIT/AlphaEdit) do not support model_type "
            f"{model_type(model)!r}",
            hint=f"supported model types: {', '.join(sorted(ARCHITECTURES))}; add an "
            "Architecture entry in skedit.sft.arch for another family",
        )
    return arch


def _get(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        raise SkeditError(
            f"model of type {model_type(model)!r} has no module {path!r}",
            hint="the model's structure differs from its family's usual layout",
        ) from exc


def blocks_path(model: nn.Module) -> str:
    """Dotted path of the ModuleList of transformer blocks (a wrapper's, when it has one)."""
    arch = architecture(model)
    for path in (arch.blocks, *arch.wrapped_blocks):
        try:
            model.get_submodule(path)
        except AttributeError:
            continue
        return path
    return arch.blocks  # _get names the missing module


def num_layers(model: nn.Module) -> int:
    """Number of transformer blocks."""
    if family(model) is None:
        config = getattr(model, "config", None)
        config = getattr(config, "text_config", None) or config
        return int(getattr(config, "num_hidden_layers", 0) or 0)
    return len(_get(model, blocks_path(model)))


def block_index(model: nn.Module, name: str) -> int | None:
    """The transformer block a parameter or module name belongs to (None: outside blocks).

    Works on wrapped names too (peft's ``base_model.model.…``)."""
    if family(model) is None:
        m = _ANY_BLOCK.search(name)
    else:
        m = re.search(rf"(?:^|\.){re.escape(blocks_path(model))}\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def layers_pattern(model: nn.Module) -> str:
    """The last name of the blocks' container (``layers``, ``h``): peft's ``layers_pattern``."""
    return blocks_path(model).rsplit(".", 1)[-1] if family(model) else "layers"


def lora_targets(model: nn.Module) -> list[str]:
    """The module names that get LoRA adapters by default in ``model``'s family."""
    return list(architecture(model).lora_targets)


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
    return _get(model, blocks_path(model))[layer]


def mlp_out_name(model: nn.Module, layer: int) -> str:
    """Dotted name of the MLP output projection of ``layer``."""
    return f"{blocks_path(model)}.{layer}.{architecture(model).mlp_out}"


def mlp_out(model: nn.Module, layer: int) -> nn.Module:
    """The MLP output projection of ``layer`` (its input is the key, its output the value)."""
    return _get(model, mlp_out_name(model, layer))


# the norm some families put on the MLP's output before it joins the residual stream (Gemma 2
# and 3, OLMo 2): ``h + norm(mlp(x))``; Llama, GPT-2 and most others add ``mlp(x)`` itself
_POST_MLP_NORMS = ("post_feedforward_layernorm",)


def mlp_post_norm(model: nn.Module, layer: int) -> nn.Module | None:
    """The normalisation between ``layer``'s MLP output and the residual stream, or None."""
    blk = block(model, layer)
    for name in _POST_MLP_NORMS:
        norm = getattr(blk, name, None)
        if isinstance(norm, nn.Module):
            return norm
    return None


def mlp(model: nn.Module, layer: int) -> nn.Module:
    """The whole MLP of ``layer`` (the parent of its output projection)."""
    return _get(model, mlp_out_name(model, layer).rsplit(".", 1)[0])


def mlp_in(model: nn.Module, layer: int) -> list[nn.Module]:
    """The MLP input projection(s) of ``layer``."""
    return [_get(model, f"{blocks_path(model)}.{layer}.{m}") for m in architecture(model).mlp_in]


def attention(model: nn.Module, layer: int) -> nn.Module:
    """The attention module of ``layer``."""
    return _get(model, f"{blocks_path(model)}.{layer}.{architecture(model).attention}")


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
