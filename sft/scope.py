"""Which weights train: all of them, LoRA adapters (peft), or chosen layers/modules only.

Freezing is done by ``requires_grad`` before the trainer is built, so the optimizer only ever
sees the trainable parameters.
"""

from __future__ import annotations

from skedit.prompts.errors import SkeditError
from skedit.sft import arch
from skedit.sft.config import TrainConfig


def _check_layers(model, layers: list[int]) -> None:
    n = arch.num_layers(model)
    bad = [i for i in layers if i < 0 or (n and i >= n)]
    if bad:
        raise SkeditError(
            f"layer(s) {bad} do not exist: the model has {n} layers (0..{n - 1})", field="layers"
        )


def apply_scope(model, config: TrainConfig):
    """Return the model to train: the same model with parameters frozen, or a peft model."""
    _check_layers(model, config.layers)
    if config.scope == "lora":
        return _lora(model, config)
    model.requires_grad_(True)
    if config.scope == "full":
        return model
    chosen = 0
    for name, param in model.named_parameters():
        layer = arch.block_index(model, name)
        in_layer = layer is not None and (not config.layers or layer in config.layers)
        in_module = not config.modules or any(f".{mod}." in f".{name}" for mod in config.modules)
        param.requires_grad_(in_layer and in_module)
        chosen += int(in_layer and in_module)
    if not chosen:
        raise SkeditError(
            f"no parameter matches layers {config.layers} and modules {config.modules}",
            field="modules",
            hint="module names look like mlp, self_attn, down_proj, q_proj",
        )
    return model


def _lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    kw = {}
    if config.layers:
        kw = {
            "layers_to_transform": list(config.layers),
            "layers_pattern": arch.layers_pattern(model),
        }
    peft_cfg = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        task_type="CAUSAL_LM",
        **kw,
    )
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as exc:
        raise SkeditError(
            f"LoRA could not be attached: {exc}",
            field="lora_targets",
            hint="name modules the model has, e.g. q_proj,v_proj or down_proj",
        ) from exc


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class ChangeScale:
    """``training.delta_scale``: the trainable weights as training starts (a CPU copy), so that
    afterwards the change is scaled, ``W0 + s (W - W0)``. Of a LoRA pair only the B factor is
    scaled (it starts at zero: the merged update ``B A`` is scaled by ``s`` once, not twice)."""

    def __init__(self, model, scale: float) -> None:
        self.scale = scale
        self.start = {
            name: p.detach().to("cpu", copy=True)
            for name, p in model.named_parameters()
            if p.requires_grad and not _lora_a(name)
        }

    def apply(self, model) -> None:
        import torch

        with torch.no_grad():
            for name, p in model.named_parameters():
                p0 = self.start.get(name)
                if p0 is not None:
                    p0 = p0.to(p.device, p.dtype)
                    p.copy_(p0 + self.scale * (p - p0))


def _lora_a(name: str) -> bool:
    return ".lora_A." in name or ".lora_embedding_A." in name
