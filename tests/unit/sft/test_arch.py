"""skedit.sft.arch finds blocks, MLP projections and LoRA targets in each model family."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skedit.sft import arch
from skedit.sft.config import TrainConfig
from skedit.sft.scope import apply_scope


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


def _gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8,
    )  # fmt: skip
    return Gemma3ForCausalLM(cfg)


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=32, n_embd=16, n_layer=2, n_head=2))


@pytest.mark.parametrize(
    ("make", "n", "out_name"),
    [
        (_llama, 3, "model.layers.2.mlp.down_proj"),
        (_gemma3, 2, "model.layers.1.mlp.down_proj"),
        (_gpt2, 2, "transformer.h.1.mlp.c_proj"),
    ],
)
def test_each_family_names_its_blocks_and_mlp(make, n, out_name):
    model = make()
    assert arch.num_layers(model) == n
    assert arch.mlp_out_name(model, n - 1) == out_name
    assert arch.mlp_out(model, n - 1) is model.get_submodule(out_name)
    assert arch.block_index(model, out_name + ".weight") == n - 1
    assert arch.block_index(model, "base_model.model." + out_name + ".weight") == n - 1
    assert arch.block_index(model, "lm_head.weight") is None
    w = arch.weight_out_in(model, 0)
    assert w.shape[0] == 16  # (out = hidden, in = MLP width), Conv1D's transpose hidden
    assert arch.key_size(model, 0) == w.shape[1] > 16
    assert arch.mlp_in(model, 0) and arch.attention(model, 0) is not None
    assert arch.embedding(model).weight.shape[0] == 32


def test_blocks_under_a_multimodal_wrapper_are_found():
    inner = _gemma3()
    wrapper = nn.Module()
    wrapper.config = inner.config
    wrapper.model = nn.Module()
    wrapper.model.language_model = inner.model  # model.language_model.layers.N
    assert arch.blocks_path(wrapper) == "model.language_model.layers"
    assert arch.num_layers(wrapper) == 2
    name = "model.language_model.layers.1.mlp.down_proj"
    assert arch.mlp_out_name(wrapper, 1) == name
    assert arch.block_index(wrapper, name + ".weight") == 1


def test_layer_scope_works_on_gpt2_whose_blocks_are_not_called_layers():
    model = apply_scope(_gpt2(), TrainConfig(scope="layers", layers=[1], modules=["mlp"]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("transformer.h.1.mlp.") for n in trainable)


def test_lora_on_chosen_gpt2_layers_uses_the_family_targets():
    model = _gpt2()
    cfg = TrainConfig(scope="lora", layers=[0], lora_targets=arch.lora_targets(model))
    peft_model = apply_scope(model, cfg)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all(".h.0." in n and "lora_" in n for n in names)


def test_unknown_family_is_named():
    model = nn.Linear(2, 2)
    model.config = type("C", (), {"model_type": "t5"})()
    with pytest.raises(Exception, match="t5"):
        arch.mlp_out_name(model, 0)
    assert torch.is_tensor(model.weight)
