"""training.preserve_weight, training.nullspace and training.delta_scale: the trained maps
change little on ordinary inputs."""

from __future__ import annotations

import copy

import pytest
import torch

from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import TransferExample
from skedit.sft.config import TrainConfig
from skedit.sft.modelops import input_moments, load_model
from skedit.sft.preserve import Preserve, anchor_preserve, anchor_rows, preserved_linears
from skedit.sft.scope import apply_scope
from skedit.sft.train import train_in_memory

SCOPE = dict(method="kd", scope="layers", modules=["mlp"])


def _rows() -> list[TransferExample]:
    edit = TransferExample(
        prompt="Where was Alice born? She was born in",
        completion=" Paris",
        teacher_prompt="Context: Alice was born in Paris.\nWhere was Alice born? She was born in",
        kind="rephrase",
        edit_id="e1",
        subject="Alice",
    )
    anchors = [
        TransferExample(prompt=p, completion=c, teacher_prompt=p, kind="locality", edit_id="e1")
        for p, c in [("Bob lives in", " London"), ("The sky is", " blue"), ("One, two,", " three")]
    ]
    return [edit, *anchors]


def _anchor_ids(tok) -> list[list[int]]:
    return anchor_rows(tok, _rows())


def test_moments_are_the_mean_outer_product_of_each_maps_inputs(bpe_lm_dir):
    model, tok = load_model(bpe_lm_dir, device="cpu")
    model = apply_scope(model, TrainConfig(**SCOPE))
    linears = preserved_linears(model)
    assert linears and all(".mlp." in name for name in linears)
    rows = _anchor_ids(tok)
    moments, count = input_moments(model, linears, rows, pad_id=tok.pad_token_id, progress=False)
    assert count == sum(map(len, rows)) and len(rows) == 3  # every token of the 3 anchors
    name, mod = next(iter(linears.items()))
    seen = []
    handle = mod.register_forward_hook(lambda _m, args, _o: seen.append(args[0][0]))
    with torch.no_grad():
        for r in rows:  # one row at a time: no padding to leave out
            model(input_ids=torch.tensor([r]))
    handle.remove()
    x = torch.cat(seen)
    assert torch.allclose(moments[name], x.T @ x / len(x), atol=1e-5)


def test_the_loss_term_has_the_penalty_value_and_gradient(bpe_lm_dir):
    model, tok = load_model(bpe_lm_dir, device="cpu")
    model = apply_scope(model, TrainConfig(**SCOPE))
    linears = preserved_linears(model)
    moments, _ = input_moments(
        model, linears, _anchor_ids(tok), pad_id=tok.pad_token_id, progress=False
    )
    pres = Preserve(linears, moments, weight=3.0)
    assert pres.term()[1].item() == 0.0  # nothing has changed yet
    w0 = {n: m.weight.detach().clone() for n, m in linears.items()}
    torch.manual_seed(0)
    with torch.no_grad():
        for m in linears.values():
            m.weight.add_(0.01 * torch.randn_like(m.weight))
    term, value = pres.term()
    term.backward()
    want = 0.0
    for n, m in linears.items():
        w = m.weight.detach().clone().requires_grad_(True)
        c = moments[n]
        d = w - w0[n]
        p = (d @ c * d).sum() / (w0[n] @ c * w0[n]).sum()
        (g,) = torch.autograd.grad(3.0 * p / len(linears), w)
        assert torch.allclose(m.weight.grad, g, rtol=1e-4, atol=1e-7)
        want += 3.0 * p.item() / len(linears)
    assert value.item() == pytest.approx(want, rel=1e-4)
    assert term.item() == pytest.approx(want, rel=1e-4)


def test_training_with_the_penalty_changes_the_anchors_tokens_less(bpe_lm_dir):
    """Same rows, same steps: the trained MLPs' outputs on the anchors' tokens move less with
    the penalty, and the edit's rows still change the weights."""
    base, tok = load_model(bpe_lm_dir, device="cpu")
    cfg = dict(**SCOPE, max_steps=6, batch_size=4, warmup_steps=0, learning_rate=1e-2, seed=0)
    changes = {}
    for weight in (0.0, 100.0):
        model = copy.deepcopy(base)
        trained = train_in_memory(model, tok, _rows(), TrainConfig(**cfg, preserve_weight=weight))
        ref = apply_scope(copy.deepcopy(base), TrainConfig(**SCOPE))
        linears = preserved_linears(ref)
        pres = anchor_preserve(ref, tok, _rows(), 1.0)
        now = dict(trained.named_parameters())
        with torch.no_grad():
            for name, mod in linears.items():
                mod.weight.copy_(now[f"{name}.weight"])
        changes[weight] = pres.term()[1].item()
    assert changes[100.0] > 0.0
    assert changes[100.0] < 0.5 * changes[0.0]


def test_the_penalty_needs_anchors(bpe_lm_dir):
    model, tok = load_model(bpe_lm_dir, device="cpu")
    model = apply_scope(model, TrainConfig(**SCOPE))
    edits_only = [r for r in _rows() if r.kind != "locality"]
    with pytest.raises(SkeditError, match="no locality rows"):
        anchor_preserve(model, tok, edits_only, 1.0)


def test_the_penalty_needs_distillation_and_trained_weights():
    with pytest.raises(SkeditError, match="preserve_weight"):
        TrainConfig(method="sft", preserve_weight=1.0)
    with pytest.raises(SkeditError, match="preserve_weight"):
        TrainConfig(method="kd", scope="lora", preserve_weight=1.0)
    with pytest.raises(SkeditError, match="preserve_weight"):
        TrainConfig(method="kd", preserve_weight=-1.0)


def test_nullspace_keeps_the_change_off_the_directions_ordinary_inputs_use(bpe_lm_dir):
    """training.nullspace: after training, every trained map's change is (numerically) zero on
    the input directions that carry 90% of the anchors' and sampled texts' input energy, the
    edit's rows still changed the weights, and the anchors' tokens' outputs moved far less
    than without the projection on the same rows and steps."""
    from skedit.sft.preserve import null_space

    base, tok = load_model(bpe_lm_dir, device="cpu")
    cfg = dict(**SCOPE, max_steps=6, batch_size=4, warmup_steps=0, learning_rate=1e-2, seed=0)
    moved = {}
    for share in (0.0, 0.9):
        model = copy.deepcopy(base)
        config = TrainConfig(**cfg, nullspace=share, nullspace_samples=8)
        trained = train_in_memory(model, tok, _rows(), config)
        ref = apply_scope(copy.deepcopy(base), TrainConfig(**SCOPE))
        space = null_space(ref, tok, _rows(), 0.9, 8)  # the statistics training used
        pres = anchor_preserve(ref, tok, _rows(), 1.0)
        now = dict(trained.named_parameters())
        off = 0.0
        for (_, w0, proj), (name, mod) in zip(
            space.items, preserved_linears(ref).items(), strict=True
        ):
            delta = now[f"{name}.weight"].detach().float() - w0
            assert delta.abs().max() > 0  # the rows did train this map
            off = max(off, float((delta - delta @ proj).norm() / delta.norm()))
            with torch.no_grad():
                mod.weight.copy_(now[f"{name}.weight"])
        moved[share] = pres.term()[1].item()
        if share:
            assert off < 1e-4  # no change left in the used directions
            sizes = [w.shape[1] for w, _, _ in space.items]
            assert all(0 < r < n for r, n in zip(space.used.values(), sizes, strict=True))
    assert 0.0 < moved[0.9] < 0.2 * moved[0.0]


def test_nullspace_settings_are_checked():
    with pytest.raises(SkeditError, match="nullspace"):
        TrainConfig(method="kd", nullspace=1.0)
    with pytest.raises(SkeditError, match="nullspace"):
        TrainConfig(method="kd", scope="lora", nullspace=0.9)
    with pytest.raises(SkeditError, match="nullspace_samples"):
        TrainConfig(method="kd", nullspace=0.9, nullspace_samples=-1)
    TrainConfig(method="sft", nullspace=0.9)  # a constraint on the weights: any loss


def test_a_launch_that_shards_the_weights_is_refused(bpe_lm_dir, monkeypatch):
    from skedit.sft.preserve import null_space

    model, tok = load_model(bpe_lm_dir, device="cpu")
    model = apply_scope(model, TrainConfig(**SCOPE))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(SkeditError, match="FSDP"):
        null_space(model, tok, _rows(), 0.9, 0)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(SkeditError, match="ZeRO-3"):
        anchor_preserve(model, tok, _rows(), 1.0)


@pytest.mark.parametrize(
    "scope",
    [dict(scope="layers", layers=[1], modules=["mlp"]), dict(scope="lora", lora_r=4)],
    ids=["layers", "lora"],
)
def test_the_student_keeps_the_given_share_of_its_change(bpe_lm_dir, scope):
    """With delta_scale 0.5 every trained weight lies halfway between the base and the student
    trained the same way with 1.0 (LoRA: the merged update is halved, not quartered), and the
    weights training did not touch are the base's."""
    base, tok = load_model(bpe_lm_dir, device="cpu")
    cfg = dict(method="kd", **scope, max_steps=4, batch_size=2, warmup_steps=0, seed=0)
    cfg["learning_rate"] = 1e-2
    trained = {}
    for s in (1.0, 0.5):
        config = TrainConfig(**cfg, delta_scale=s)
        trained[s] = train_in_memory(copy.deepcopy(base), tok, _rows(), config).state_dict()
    b = base.state_dict()
    changed = [k for k in b if not torch.equal(trained[1.0][k], b[k])]
    assert changed and len(changed) < len(b)
    for k in b:
        half = b[k] + 0.5 * (trained[1.0][k] - b[k]) if k in changed else b[k]
        torch.testing.assert_close(trained[0.5][k], half, atol=1e-6, rtol=1e-5)


def test_delta_scale_is_checked():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(SkeditError, match="delta_scale must be in"):
            TrainConfig(delta_scale=bad)
    assert TrainConfig.from_dict({"delta_scale": 0.9}).delta_scale == 0.9
