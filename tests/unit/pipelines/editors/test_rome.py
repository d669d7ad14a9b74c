"""ROME, MEMIT and AlphaEdit on tiny locally built models (Llama and GPT-2 style).

Random tiny models have small MLP outputs and diffuse attention, so these tests use prompts
that end with the subject and a generous norm clamp; quality on a trained model is measured
by ``skedit bench rome``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from skedit.pipelines.editors.memit import apply_alphaedit, apply_memit, null_space_projector
from skedit.pipelines.editors.rome import apply_rome, load_recipe
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit
from skedit.sft import arch
from skedit.sft.modelops import generate, load_model

CORPUS = [
    "the capital of france is paris",
    "bob lives in london",
    "carol works for berlin",
    "the city of bob",
    "the country of carol",
]
EDIT = Edit(subject="alice", prompt="the city of alice", target_new="rome")
EDIT2 = Edit(subject="dave", prompt="the country of dave", target_new="italy")


def _hp(tmp_path, **kw):
    # random weights: tiny MLP outputs, so δ may be many times their norm
    return {
        "clamp_norm": 200.0,
        "weight_decay": 0.0,
        "steps": 60,
        "corpus": CORPUS,
        "cache_dir": str(tmp_path / "cache"),
        "progress": False,
        **kw,
    }


@pytest.fixture(scope="module")
def llama(tiny_lm_dir):
    torch.set_num_threads(1)
    return load_model(tiny_lm_dir, device="cpu")


def _special_ids(tok) -> dict[str, int]:
    return {f"{k}_token_id": getattr(tok, f"{k}_token_id") for k in ("bos", "eos", "pad")}


@pytest.fixture(scope="module")
def gpt2(tiny_lm_dir):
    """A 3-layer GPT-2 (Conv1D weights) with the tiny word-level tokenizer, built locally."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = load_model(tiny_lm_dir, device="cpu")
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=32,
        n_layer=3,
        n_head=4,
        **_special_ids(tok),
    )
    return GPT2LMHeadModel(cfg).eval(), tok


@pytest.fixture(scope="module")
def gemma3(tiny_lm_dir):
    """A 3-layer Gemma 3: it normalises each MLP's output before the residual stream (a
    post-feedforward norm), with gains away from 1 as a trained model's are."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    _, tok = load_model(tiny_lm_dir, device="cpu")
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        sliding_window=64,
        layer_types=["full_attention"] * 3,
        **_special_ids(tok),
    )
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in range(3):
            arch.mlp_post_norm(model, layer).weight.normal_(0.0, 0.5)
    return model, tok


def _answer(model, tok, prompt):
    return generate(model, tok, [prompt], max_new_tokens=1)[0].strip()


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _changed(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


@pytest.mark.parametrize(
    "family,style",
    # world style: key at the prompt's last token, no prefixes; real-model recipes: key at the
    # subject's last token, averaged over sampled prefixes (published ROME)
    [("llama", "world"), ("gpt2", "world"), ("llama", "published"), ("gpt2", "published")],
)
def test_rome_rank_one_update_of_one_layer_gives_target(family, style, request, tmp_path):
    model, tok = copy.deepcopy(request.getfixturevalue(family))
    assert _answer(model, tok, EDIT.prompt) != "rome"
    before = _snapshot(model)
    kw = {"context_prefixes": 3, "fact_token": "subject_last"} if style == "published" else {}
    apply_rome(model, tok, [EDIT], _hp(tmp_path, layer=0, **kw))
    changed = _changed(model, before)
    name = arch.mlp_out_name(model, 0) + ".weight"
    assert changed == {name}
    delta = model.get_parameter(name) - before[name]
    assert torch.linalg.matrix_rank(delta.double(), rtol=1e-6) == 1
    assert _answer(model, tok, EDIT.prompt) == "rome"
    assert model.skedit_edit_log[-1]["layer"] == 0


def test_rome_applies_edits_one_after_another(llama, tmp_path):
    model, tok = copy.deepcopy(llama)
    before = _snapshot(model)
    # the key statistics must know the subjects' directions, or edit 2 lands on edit 1's key
    corpus = [*CORPUS, "alice was born in paris", "dave lives in rome"]
    apply_rome(model, tok, [EDIT, EDIT2], _hp(tmp_path, layer=0, corpus=corpus))
    name = arch.mlp_out_name(model, 0) + ".weight"
    delta = model.get_parameter(name) - before[name]
    assert torch.linalg.matrix_rank(delta.double(), rtol=1e-6) == 2  # one rank per edit
    assert _answer(model, tok, EDIT.prompt) == "rome"
    assert _answer(model, tok, EDIT2.prompt) == "italy"


def test_memit_batch_changes_only_the_chosen_layers(gpt2, tmp_path):
    model, tok = copy.deepcopy(gpt2)
    before = _snapshot(model)
    apply_memit(model, tok, [EDIT, EDIT2], _hp(tmp_path, layers=[0, 1], mom2_weight=10.0))
    assert _changed(model, before) == {
        "transformer.h.0.mlp.c_proj.weight",
        "transformer.h.1.mlp.c_proj.weight",
    }
    assert _answer(model, tok, EDIT.prompt) == "rome"
    assert _answer(model, tok, EDIT2.prompt) == "italy"


def test_memit_on_llama_gives_both_targets(llama, tmp_path):
    model, tok = copy.deepcopy(llama)
    before = _snapshot(model)
    apply_memit(model, tok, [EDIT, EDIT2], _hp(tmp_path, layers=[0], mom2_weight=10.0))
    assert _changed(model, before) == {"model.layers.0.mlp.down_proj.weight"}
    assert [_answer(model, tok, e.prompt) for e in (EDIT, EDIT2)] == ["rome", "italy"]


def test_memit_through_gemmas_mlp_output_norm_edits_and_keeps_the_rest(gemma3, tmp_path):
    model, tok = copy.deepcopy(gemma3)
    kept = {p: _answer(model, tok, p) for p in CORPUS}
    apply_memit(model, tok, [EDIT, EDIT2], _hp(tmp_path, layers=[0, 1], mom2_weight=10.0))
    assert [_answer(model, tok, e.prompt) for e in (EDIT, EDIT2)] == ["rome", "italy"]
    # written as a residual change, the update replaced the normalised MLP output of every
    # input: 3 of these 5 answers became "italy", "rome" or "is"
    assert {p: _answer(model, tok, p) for p in CORPUS} == kept


def test_mlp_post_norm_is_found_only_where_the_family_has_one(gemma3, llama, gpt2):
    assert arch.mlp_post_norm(gemma3[0], 1) is not None
    assert arch.mlp_post_norm(llama[0], 0) is None
    assert arch.mlp_post_norm(gpt2[0], 0) is None


def _corpus_keys(model, tok, layer):
    keys = []
    hook = arch.mlp_out(model, layer).register_forward_hook(
        lambda _m, a, _o: keys.append(a[0][0].detach())
    )
    try:
        for text in CORPUS:
            ids = tok(text, return_tensors="pt")["input_ids"]
            model(input_ids=ids)
    finally:
        hook.remove()
    return torch.cat(keys).double()  # (tokens, m)


def test_alphaedit_leaves_preserved_keys_outputs_unchanged(llama, tmp_path):
    model, tok = copy.deepcopy(llama)
    k0 = _corpus_keys(model, tok, 0)
    w0 = arch.weight_out_in(model, 0).detach().double().clone()
    apply_alphaedit(
        model, tok, [EDIT], _hp(tmp_path, layers=[0], nullspace_threshold=1e-6, l2=1e-4)
    )
    dw = arch.weight_out_in(model, 0).detach().double() - w0
    moved = (k0 @ dw.T).norm(dim=-1)  # change of the MLP output on each corpus token
    assert float(moved.max()) < 1e-3 * float((k0 @ w0.T).norm(dim=-1).min())
    assert float(dw.norm()) > 0.0
    assert _answer(model, tok, EDIT.prompt) == "rome"

    # the same update without the projection (P = I: every direction counts as free) moves
    # those outputs: the projection is what protects them
    free, _ = copy.deepcopy(llama)
    hp = _hp(tmp_path, layers=[0], nullspace_threshold=1.1, l2=1e-4)
    apply_alphaedit(free, tok, [EDIT], hp)
    dw_free = arch.weight_out_in(free, 0).detach().double() - w0
    assert float((k0 @ dw_free.T).norm(dim=-1).max()) > 100 * float(moved.max())


def test_null_space_projector_annihilates_used_directions():
    torch.manual_seed(0)
    k = torch.randn(5, 8, dtype=torch.float64)  # 5 keys in 8 dims: a 3-dim null space
    p = null_space_projector(k.T @ k / 5, 1e-8)
    assert torch.allclose(p @ k.T, torch.zeros(8, 5, dtype=torch.float64), atol=1e-10)
    assert round(float(torch.trace(p))) == 3


def test_bad_hparams_and_layers_are_user_errors(llama, tmp_path):
    model, tok = llama
    with pytest.raises(SkeditError, match="unknown rome hyper-parameter"):
        apply_rome(model, tok, [EDIT], {"layr": 0})
    with pytest.raises(SkeditError, match="layer 7 does not exist"):
        apply_rome(model, tok, [EDIT], _hp(tmp_path, layer=7))
    bad = Edit(subject="zed", prompt="the city of alice", target_new="rome")
    with pytest.raises(SkeditError, match="does not occur in the prompt"):
        apply_memit(copy.deepcopy(model), tok, [bad], _hp(tmp_path, layers=[0]))


def test_recipes_load_for_each_family():
    for family in ("world", "llama", "gemma3", "gpt2"):
        for method in ("rome", "memit", "alphaedit"):
            assert isinstance(load_recipe(family, method), dict)
    assert load_recipe("llama", "memit")["layers"] == [4, 5, 6, 7, 8]
    with pytest.raises(SkeditError, match="recipe not found: t5"):
        load_recipe("t5", "rome")


def test_edit_nll_averages_tokens_then_rows_per_edit():
    from skedit.pipelines.editors.ops import TargetIndex, edit_nll

    # vocab 2; logits 0 → p = 1/2 (NLL ln 2), logits (10, -10) at a position → NLL ≈ 0 for 0
    logits = torch.zeros(3, 3, 2)
    logits[0, 2] = torch.tensor([10.0, -10.0])
    idx = TargetIndex(
        rows=torch.tensor([0, 1, 1, 2]),
        positions=torch.tensor([2, 1, 2, 0]),
        tokens=torch.tensor([0, 1, 1, 1]),
        row_of_token=torch.tensor([0, 1, 1, 2]),
        row_len=torch.tensor([1, 2, 1]),
        edit_of_row=torch.tensor([0, 0, 1]),
    )
    ln2 = float(torch.log(torch.tensor(2.0)))
    got = edit_nll(logits, idx, 2)
    # edit 0: rows (≈0) and (ln2, ln2)/2 → ln2 / 2; edit 1: ln2
    assert torch.allclose(got, torch.tensor([ln2 / 2, ln2]), atol=1e-6)


def test_world_recipe_equals_the_dataclass_defaults():
    from skedit.pipelines.editors.memit import AlphaEditHparams, MemitHparams
    from skedit.pipelines.editors.rome import RomeHparams

    for cls in (RomeHparams, MemitHparams, AlphaEditHparams):
        recipe = load_recipe("world", cls.method)
        defaults = vars(cls())
        assert {k: defaults[k] for k in recipe} == recipe


def test_remembered_keys_update_the_inverse_exactly():
    from skedit.pipelines.editors.rome import remember_key

    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    c = a @ a.T + torch.eye(6, dtype=torch.float64)
    k = torch.randn(6, dtype=torch.float64)
    got = remember_key(torch.linalg.inv(c), k, 2.5)
    assert torch.allclose(got, torch.linalg.inv(c + 2.5 * torch.outer(k, k)), atol=1e-10)
