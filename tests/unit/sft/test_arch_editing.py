"""Edit modules are found from the model's config, never from its name."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from skedit.prompts.errors import SkeditError
from skedit.sft import arch


def _llama():
    cfg = LlamaConfig(
        vocab_size=20, hidden_size=8, intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=2,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


def _gpt2():
    return GPT2LMHeadModel(GPT2Config(vocab_size=20, n_embd=8, n_layer=2, n_head=2))


def test_llama_and_gpt2_modules():
    llama = _llama()
    assert arch.num_layers(llama) == 3
    assert arch.mlp_out(llama, 2) is llama.model.layers[2].mlp.down_proj
    assert arch.weight_out_in(llama, 0).shape == (8, 16)
    gpt2 = _gpt2()
    assert arch.mlp_out(gpt2, 1) is gpt2.transformer.h[1].mlp.c_proj
    assert arch.weight_out_in(gpt2, 1).shape == (8, 32)  # Conv1D stores (in, out)
    assert arch.key_size(gpt2, 0) == 32


def test_add_to_weight_respects_conv1d_layout():
    gpt2 = _gpt2()
    x = torch.randn(32)
    before = arch.mlp_out(gpt2, 0)(x)
    delta = torch.randn(8, 32)
    arch.add_to_weight(gpt2, 0, delta)
    assert torch.allclose(arch.mlp_out(gpt2, 0)(x), before + delta @ x, atol=1e-5)


def test_name_does_not_decide_the_architecture():
    llama = _llama()
    llama.config._name_or_path = "my-gpt2-finetune"
    assert arch.mlp_out_name(llama, 0) == "model.layers.0.mlp.down_proj"


def test_unsupported_architecture_and_layers_are_clear_errors():
    llama = _llama()
    with pytest.raises(SkeditError, match="has 3 layers"):
        arch.check_layers(llama, [3])
    assert arch.check_layers(llama, [-1]) == [2]
    llama.config.model_type = "t5"
    with pytest.raises(SkeditError, match="do not support model_type 't5'"):
        arch.mlp_out(llama, 0)
