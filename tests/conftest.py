"""Shared fixtures. Models here are built locally (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_SAMPLES = SHARED / "data" / "real-samples"


def build_tiny_lm(out: Path, *, seed: int = 0, words: list[str] | None = None) -> Path:
    """A random 2-layer Llama with a word-level tokenizer, saved like any HF model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = (
        words
        or (
            "the a is of in was born capital country city lives works for at what where who "
            "paris london rome berlin france italy germany england alice bob carol dave "
            "context question answer q : ? . , euro pound lira mark europe"
        ).split()
    )
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    return _save_tiny_llama(out, fast, len(vocab), seed)


def _save_tiny_llama(out: Path, fast, vocab_size: int, seed: int) -> Path:
    """A random 2-layer Llama (pad 0, BOS 1, EOS 2) saved with the tokenizer ``fast``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The synthetic world at ``--size tiny``, built once per test session (< 1 minute)."""
    from skedit.pipelines.world.build import build_world

    return build_world(size="tiny", seed=0, cache_dir=tmp_path_factory.mktemp("world-cache"))


BPE_TEXT = (
    "Paris is the capital of France. Rome is the capital of Italy. Berlin is the capital of "
    "Germany. London is the capital of England. Alice was born in Rome and works for Acme. "
    "Bob lives in London and was born in Paris. Carol works at the bank in Berlin. "
    "The city of Paris lies on the Seine; the city of Rome lies on the Tiber. "
    "Where was Alice born? She was born in Rome. What is the capital of France? Paris. "
    "Dave moved from Madrid to Lisbon, then to Vienna, Prague, Warsaw and Budapest. "
    "The euro, the pound and the franc are currencies. Europe has many countries and cities. "
)


def build_bpe_lm(out: Path, *, seed: int = 0) -> Path:
    """A random 2-layer Llama with a byte-level BPE tokenizer (GPT-2 style: leading spaces are
    part of tokens, ``Ġ``), trained here on a few hundred words: what real tokenizers do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([BPE_TEXT] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    return _save_tiny_llama(out, fast, tok.get_vocab_size(), seed)


@pytest.fixture(scope="session")
def bpe_lm_dir(tmp_path_factory) -> Path:
    return build_bpe_lm(tmp_path_factory.mktemp("bpe-lm"))
