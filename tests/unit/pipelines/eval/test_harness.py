"""evaluate_model on a hand-wired model whose every answer is known in advance."""

from __future__ import annotations

import json

import pytest
import torch

from skedit.pipelines.eval.reference import cached_reference, pre_edit_reference
from skedit.pipelines.eval.scoring import evaluate_model
from skedit.prompts.schema import Probe
from skedit.sft.modelops import prepare_tokenizer


class WiredLM(torch.nn.Module):
    """Next token = ``table[current token]`` (``ctx_table`` when the row holds ``ctx_id``)."""

    def __init__(self, vocab: int, table: dict[int, int], eos: int, ctx_table=None, ctx_id=-1):
        super().__init__()
        self.vocab, self.table, self.eos = vocab, table, eos
        self.ctx_table, self.ctx_id = ctx_table or {}, ctx_id
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.dummy.device

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
        b, t = input_ids.shape
        logits = torch.full((b, t, self.vocab), -10.0)
        for i in range(b):
            has_ctx = bool((input_ids[i] == self.ctx_id).any())
            table = {**self.table, **self.ctx_table} if has_ctx else self.table
            for j in range(t):
                logits[i, j, table.get(int(input_ids[i, j]), self.eos)] = 10.0

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out

    def generate(self, input_ids, attention_mask=None, max_new_tokens=8, **_):
        ids = input_ids
        for _ in range(max_new_tokens):
            nxt = self.forward(ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        return ids


@pytest.fixture(scope="module")
def tok(tiny_lm_dir):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tiny_lm_dir)
    prepare_tokenizer(t)
    return t


def wired(tok, pairs: dict[str, str], ctx_pairs: dict[str, str] | None = None) -> WiredLM:
    v = tok.get_vocab()
    table = {v[a]: v[b] for a, b in pairs.items()}
    ctx = {v[a]: v[b] for a, b in (ctx_pairs or {}).items()}
    return WiredLM(len(v), table, tok.eos_token_id, ctx, v["context"])


PROBES = [
    Probe(prompt="alice lives in", answers=["rome paris", "rome"], kind="edit", edit_id="e1"),
    Probe(prompt="alice lives in", answers=["rome paris"], kind="rephrase", edit_id="e1"),
    Probe(prompt="what is", answers=["euro"], kind="portability", edit_id="e1"),
    # the gold answer is paris, but the pre-edit model said berlin: berlin is the reference
    Probe(
        prompt="where was bob born ?",
        answers=["paris"],
        kind="locality",
        edit_id="e1",
        expected="berlin",
    ),
    Probe(
        prompt="bob lives in", answers=["berlin"], kind="locality", edit_id="e1", expected="berlin"
    ),
]


def test_exact_match_token_accuracy_and_locality_by_hand(tok):
    # in -> rome -> london: "rome london" (alias "rome" matches; 1 of 2 target tokens right)
    model = wired(
        tok,
        {
            "in": "rome",
            "rome": "london",
            "london": "</s>",
            "?": "berlin",
            "berlin": "</s>",
            "is": "pound",
        },
    )
    res = evaluate_model(model, tok, PROBES)
    assert res["edit_success"]["mean"] == 1.0  # alias
    assert res["edit_success"]["token_accuracy"]["mean"] == pytest.approx(0.5)  # multi-token
    assert res["paraphrase"]["mean"] == 0.0  # "rome london" is not "rome paris"
    assert res["portability"]["mean"] == 0.0 and res["portability"]["n"] == 1
    # locality against the pre-edit answer: "berlin" kept on one probe, lost on the other
    assert res["locality"]["mean"] == pytest.approx(0.5)
    assert res["locality"]["n"] == 2
    assert len(res["rows"]) == 5 and res["edit_success"]["ci"] == [1.0, 1.0]


def test_token_locality_uses_the_pre_edit_model_argmax(tok):
    pre = wired(tok, {"?": "berlin", "berlin": "</s>", "in": "berlin"})
    post = wired(tok, {"?": "berlin", "berlin": "rome", "in": "rome"})
    ref = pre_edit_reference(pre, tok, PROBES)
    assert set(ref) == {p.id for p in PROBES if p.kind == "locality"}
    res = evaluate_model(post, tok, PROBES, reference=ref)
    # "where was bob born ?" + " berlin": position predicting "berlin" agrees with pre (1/1);
    # "bob lives in" + " berlin": pre predicted berlin, post predicts rome (0/1)
    assert res["locality"]["token_accuracy"]["mean"] == pytest.approx(0.5)
    # a locality probe with no recorded answer takes the pre-edit model's answer, not the gold
    bare = [Probe(prompt="bob lives in", answers=["paris"], kind="locality", edit_id="e2")]
    ref2 = pre_edit_reference(pre, tok, bare)
    assert ref2[bare[0].id]["target"].strip() == "berlin"
    assert evaluate_model(pre, tok, bare, reference=ref2)["locality"]["mean"] == 1.0
    assert evaluate_model(pre, tok, bare)["locality"]["n"] == 0  # never scored against gold


def test_rows_say_how_sure_the_model_was_before_the_edit(tok, tmp_path, tiny_lm_dir):
    from skedit.pipelines.eval.report import render_markdown

    pre = wired(tok, {"?": "berlin", "berlin": "</s>", "in": "berlin"})
    sure = Probe(prompt="where was bob born ?", kind="locality", edit_id="e2")
    # a recorded answer the model does not give: it was (almost) never sure of it
    unsure = Probe(prompt="bob lives in", kind="locality", edit_id="e2", expected="rome")
    ref = pre_edit_reference(pre, tok, [sure, unsure])
    assert ref[sure.id]["logprob"] == pytest.approx(0.0, abs=1e-3)
    assert ref[unsure.id]["logprob"] < -10
    rows = evaluate_model(pre, tok, [sure, unsure], reference=ref)["rows"]
    probs = {r["prompt"]: r["base_prob"] for r in rows}
    assert probs == {"where was bob born ?": pytest.approx(1.0, abs=1e-3), "bob lives in": 0.0}
    md = render_markdown({"methods": {}, "rows": {"skedit": rows}})
    assert "## Locality by how sure the model was of the answer before the edit" in md
    # the unsure neighbour is lost (the model says berlin), the sure one kept
    assert "| skedit | 0.00 (1) | – (0) | 1.00 (1) |" in md
    # a reference cached before log-probabilities were recorded is computed again
    cached_reference(tiny_lm_dir, [sure], tmp_path, model=pre, tokenizer=tok)
    (path,) = tmp_path.glob("reference-*.json")
    path.write_text(json.dumps({sure.id: {"answer": "berlin", "target": "berlin"}}))
    again = cached_reference(tiny_lm_dir, [sure], tmp_path, model=pre, tokenizer=tok)
    assert again[sure.id]["logprob"] == pytest.approx(0.0, abs=1e-3)


def test_prefixes_per_edit_reach_the_model(tok):
    model = wired(tok, {"in": "london", "london": "</s>"}, ctx_pairs={"in": "rome", "rome": "</s>"})
    probes = [Probe(prompt="alice lives in", answers=["rome"], kind="edit", edit_id="e1")]
    assert evaluate_model(model, tok, probes)["edit_success"]["mean"] == 0.0
    res = evaluate_model(model, tok, probes, prefixes={"e1": "context : alice rome .\n"})
    assert res["edit_success"]["mean"] == 1.0
    assert res["rows"][0]["context"] is True


def test_by_relation_and_reference_cache(tok, tmp_path, tiny_lm_dir):
    model = wired(tok, {"in": "rome", "rome": "</s>", "?": "berlin", "berlin": "</s>"})
    res = evaluate_model(model, tok, PROBES, relations={"e1": "residence"})
    assert res["by_relation"]["residence"]["edit_success"]["n"] == 1
    ref = cached_reference(tiny_lm_dir, PROBES, tmp_path, model=model, tokenizer=tok)
    again = cached_reference(tiny_lm_dir, PROBES, tmp_path)  # no model: must come from disk
    assert ref == again and len(list(tmp_path.glob("reference-*.json"))) == 1


def test_encode_texts_scores_every_token_or_only_the_answer(tok):
    from skedit.pipelines.eval.fluency import encode_texts

    ((ids, labels),) = encode_texts(tok, ["alice lives in rome ."])
    assert labels[0] == -100 and labels[1:] == ids[1:]  # every token after BOS
    ((ids, labels),) = encode_texts(tok, ["alice lives in rome ."], answer_tokens=2)
    v = tok.get_vocab()
    assert ids[-3:] == [v["rome"], v["."], tok.eos_token_id]
    assert [x for x in labels if x != -100] == ids[-3:]  # answer, period, end of sequence
