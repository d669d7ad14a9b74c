"""The KL loss on hand-made logits, and teacher/student alignment of the completion tokens."""

from __future__ import annotations

import math

import pytest
import torch

from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import TransferExample
from skedit.sft.kd import KDCollator, encode_example, kd_loss, topk_kd_loss


def test_kd_loss_is_zero_when_student_equals_teacher():
    logits = torch.randn(2, 3, 5)
    assert kd_loss(logits, logits.clone(), torch.ones(2, 3)).item() == pytest.approx(0, abs=1e-6)


def test_kd_loss_matches_hand_computed_kl_and_ignores_masked_tokens():
    teacher = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]])  # token 0: p = (.5, .5)
    student = torch.tensor([[[math.log(0.9), math.log(0.1)], [-9.0, 9.0]]])
    mask = torch.tensor([[1, 0]])  # the wildly different second token does not count
    want = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kd_loss(student, teacher, mask).item() == pytest.approx(want, rel=1e-5)


def test_kd_loss_is_forward_kl_teacher_to_student():
    teacher = torch.tensor([[[2.0, 0.0, -1.0]]])
    student = torch.tensor([[[0.0, 1.0, 0.5]]])
    pt, ps = teacher.softmax(-1), student.softmax(-1)
    forward = (pt * (pt.log() - ps.log())).sum().item()
    reverse = (ps * (ps.log() - pt.log())).sum().item()
    got = kd_loss(student, teacher, torch.ones(1, 1)).item()
    assert got == pytest.approx(forward, rel=1e-5)
    assert got != pytest.approx(reverse, rel=1e-3)


def test_kd_loss_temperature_softens_and_scales_by_t_squared():
    teacher = torch.tensor([[[4.0, 0.0]]])
    student = torch.tensor([[[0.0, 4.0]]])
    t = 2.0
    pt, ps = (teacher / t).softmax(-1), (student / t).softmax(-1)
    want = (pt * (pt.log() - ps.log())).sum().item() * t * t
    assert kd_loss(student, teacher, torch.ones(1, 1), t).item() == pytest.approx(want, rel=1e-5)


def test_kd_loss_with_empty_mask_is_zero():
    logits = torch.randn(1, 2, 4)
    assert kd_loss(logits, torch.randn(1, 2, 4), torch.zeros(1, 2)).item() == 0.0


@pytest.fixture(scope="module")
def tiny(tiny_lm_dir):
    from skedit.sft.modelops import load_model

    return load_model(tiny_lm_dir, device="cpu")


def _rows():
    return [
        TransferExample(
            prompt="alice was born in",
            completion=" rome",
            teacher_prompt="context : alice born rome .\nalice was born in",
            kind="edit",
        ),
        TransferExample(
            prompt="what is the capital of the country of bob ?",
            completion=" paris , france",
            teacher_prompt="what is the capital of the country of bob ?",
            kind="locality",
        ),
        TransferExample(
            prompt="carol lives in",
            completion=" berlin .",
            teacher_prompt="context : a b c d e f g carol lives berlin .\ncarol lives in",
            kind="portability",
        ),
    ]


def _tail_logits(model, ids, mask, pos, keep):
    with torch.no_grad():
        return model(
            input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep
        ).logits[:, :-1]


def test_padded_batch_gives_each_row_its_unpadded_logits(tiny):
    """Left-padded prompts + a shared right-padded completion: the completion logits of every
    row, for teacher and student, equal those of that row alone with no padding."""
    model, tok = tiny
    rows = _rows()
    encoded = [encode_example(tok, r) for r in rows]
    batch = KDCollator(tok.pad_token_id)(encoded)
    c = batch["completion_ids"].shape[1]
    for side in ("", "teacher_"):
        logits = _tail_logits(
            model,
            batch[f"{side}input_ids"],
            batch[f"{side}attention_mask"],
            batch[f"{side}position_ids"],
            c + 1,
        )
        for i, enc in enumerate(encoded):
            prompt = enc["teacher_prompt_ids" if side else "prompt_ids"]
            comp = enc["completion_ids"]
            ids = torch.tensor([prompt + comp])
            alone = _tail_logits(
                model, ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None], len(comp) + 1
            )[0]
            torch.testing.assert_close(logits[i, : len(comp)], alone, atol=1e-5, rtol=1e-4)
    # the completion tokens are identical on both sides, and padding is masked out
    assert torch.equal(batch["input_ids"][:, -c:], batch["teacher_input_ids"][:, -c:])
    assert batch["completion_mask"].sum().item() == sum(len(e["completion_ids"]) for e in encoded)


def test_identical_prompts_give_identical_teacher_and_student_logits(tiny):
    model, tok = tiny
    rows = [r.model_copy(update={"teacher_prompt": r.prompt}) for r in _rows()]
    batch = KDCollator(tok.pad_token_id)([encode_example(tok, r) for r in rows])
    keep = batch["completion_ids"].shape[1] + 1
    s = _tail_logits(
        model, batch["input_ids"], batch["attention_mask"], batch["position_ids"], keep
    )
    t = _tail_logits(
        model,
        batch["teacher_input_ids"],
        batch["teacher_attention_mask"],
        batch["teacher_position_ids"],
        keep,
    )
    torch.testing.assert_close(s, t)
    assert kd_loss(s, t, batch["completion_mask"]).item() == pytest.approx(0, abs=1e-6)


def test_transfer_set_can_carry_the_teachers_top_k(tiny):
    from skedit.prompts.schema import DensePrompt, Probe
    from skedit.sft.config import TrainConfig
    from skedit.sft.transfer import build_transfer_set

    model, tok = tiny
    probes = [
        Probe(prompt="alice was born in", answers=["rome"], kind="edit", edit_id="e1"),
        Probe(
            prompt="bob lives in", answers=["x"], kind="locality", edit_id="e1", expected="london"
        ),
    ]
    prompts = [DensePrompt(edit_ids=["e1"], text="alice born rome .", status="approved")]
    rows = build_transfer_set(
        model,
        tok,
        prompts,
        probes,
        config=TrainConfig(topk=3, teacher_max_new_tokens=2),
        subjects={"e1": "Alice"},
        progress=False,
    )
    assert [r.kind for r in rows] == ["edit", "locality"]
    # the edit's row names its subject (training.subject_gate keys on it); the anchor's does not
    assert [r.subject for r in rows] == ["Alice", None]
    for r in rows:
        n = len(encode_example(tok, r)["completion_ids"])
        assert len(r.teacher_topk) == n
        for step in r.teacher_topk:
            logps = [lp for _, lp in step]
            assert len(step) == 3 and logps == sorted(logps, reverse=True) and logps[0] <= 0
    # the teacher's greedy answer is its own top-1 token at every completion position
    edit = rows[0]
    ids = encode_example(tok, edit)["completion_ids"]
    assert [step[0][0] for step in edit.teacher_topk] == ids


def _topk_of(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    top = torch.log_softmax(logits, -1).topk(k, dim=-1)
    return top.indices, top.values


def test_topk_kl_is_the_full_kl_when_the_k_tokens_hold_all_the_mass():
    torch.manual_seed(0)
    teacher, student = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    ids, logp = _topk_of(teacher, 6)
    got = topk_kd_loss(student, ids, logp, mask).item()
    assert got == pytest.approx(kd_loss(student, teacher, mask).item(), rel=1e-5)


def test_topk_kl_is_zero_for_the_teacher_itself_and_below_the_full_kl():
    torch.manual_seed(1)
    teacher, student = torch.randn(2, 4, 50), torch.randn(2, 4, 50)
    mask = torch.ones(2, 4)
    ids, logp = _topk_of(teacher, 5)
    assert topk_kd_loss(teacher, ids, logp, mask).item() == pytest.approx(0, abs=1e-6)
    coarse = topk_kd_loss(student, ids, logp, mask).item()
    assert 0 < coarse <= kd_loss(student, teacher, mask).item()


def test_stored_topk_rows_batch_without_teacher_inputs_and_need_every_token(tiny):
    model, tok = tiny
    rows = _rows()[:2]
    for r in rows:
        n = len(encode_example(tok, r)["completion_ids"])
        # distinct entries per row and token; the first row stored k = 3 (an earlier batch's)
        r.teacher_topk = [
            [(10 * j + 1, -0.1), (10 * j + 2, -2.5), (10 * j + 3, -4.0)][: 3 if r is rows[0] else 2]
            for j in range(n)
        ]
    encoded = [encode_example(tok, r, topk=2) for r in rows]
    batch = KDCollator(tok.pad_token_id)(encoded)
    c = batch["completion_ids"].shape[1]
    assert batch["topk_ids"].shape == (2, c, 2) and "teacher_input_ids" not in batch
    for i, r in enumerate(rows):
        n = len(r.teacher_topk)
        # token j of row i holds that row's j-th stored entries, cut to k = 2, best first
        assert batch["topk_ids"][i, :n].tolist() == [[t for t, _ in s[:2]] for s in r.teacher_topk]
        assert batch["topk_logp"][i, :n, 1].tolist() == pytest.approx([-2.5] * n)
        assert batch["completion_mask"][i, n:].sum() == 0  # the rest is padding, masked
    short = rows[0].model_copy(update={"teacher_topk": rows[0].teacher_topk[:-1]})
    with pytest.raises(SkeditError, match="stores the teacher's top-k"):
        encode_example(tok, short, topk=2)
    with pytest.raises(SkeditError, match="x 3"):  # the second row stored only 2 a token
        encode_example(tok, rows[1], topk=3)


def test_stored_topk_past_the_students_vocabulary_is_an_error():
    from skedit.sft.train import check_topk_ids

    row = TransferExample(prompt="a", completion=" b", teacher_prompt="a", kind="edit")
    row.teacher_topk = [[(5, -0.1), (70000, -3.0)]]
    check_topk_ids([row], 80000)
    with pytest.raises(SkeditError, match="token 70000, past the student's 32000"):
        check_topk_ids([row], 32000)


def test_topk_distillation_learns_the_stored_answers_without_a_teacher(tiny_lm_dir):
    """The student learns from the transfer set's top-k alone (no teacher model anywhere):
    rows whose stored teacher is sure of an answer the base model does not give."""
    from skedit.sft.config import TrainConfig
    from skedit.sft.modelops import generate, load_model
    from skedit.sft.train import train_in_memory

    model, tok = load_model(tiny_lm_dir, device="cpu")
    prompts = ["alice was born in", "where was alice born ?", "bob lives in"]
    answers = ["rome", "rome", "london"]
    before = [g.strip() for g in generate(model, tok, prompts, max_new_tokens=1)]
    assert before != answers
    rows = []
    for p, a in zip(prompts, answers, strict=True):
        row = TransferExample(prompt=p, completion=" " + a, teacher_prompt="(stored)", kind="edit")
        (answer_id,) = encode_example(tok, row)["completion_ids"]
        other = (answer_id + 1) % len(tok)
        row.teacher_topk = [[(answer_id, -0.01), (other, -5.0)]]
        rows.append(row)
    cfg = TrainConfig(
        method="kd",
        kd_teacher="topk",
        topk=2,
        ce_weight=0.0,
        max_steps=40,
        batch_size=4,
        warmup_steps=0,
        learning_rate=1e-2,
    )
    model = train_in_memory(model, tok, rows, cfg)
    after = [g.strip() for g in generate(model, tok, prompts, max_new_tokens=1)]
    assert after == answers


def test_topk_distillation_settings_are_checked():
    from skedit.sft.config import TrainConfig

    with pytest.raises(SkeditError, match="topk is 0"):
        TrainConfig(kd_teacher="topk")
    with pytest.raises(SkeditError, match="temperature 1"):
        TrainConfig(kd_teacher="topk", topk=8, kd_temperature=2.0)
    with pytest.raises(SkeditError, match="kd_teacher"):
        TrainConfig(kd_teacher="offline")
