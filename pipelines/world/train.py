"""Train the world's Llama-style model from scratch with a plain PyTorch loop (CPU friendly).

One readable loop: sample a batch of documents, right-pad, loss on the answers only, AdamW with
warmup and cosine decay. Threads: on an idle 2-core machine two OpenMP threads stepped 1.6x
faster than one, but with one other busy process they were 6-20x slower (0.2 vs 4 s/step), so
``threads="auto"`` keeps measuring both and uses the faster (:class:`ThreadChooser`).
Speed: the transformer body runs through ``torch.compile`` in a long build (its elementwise ops
fused; eager where no C++ compiler is found) and AdamW is the fused CPU kernel;
``skedit bench world-step`` measures each against the plain loop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from skedit.pipelines.world.batches import FastEncoder, pack, sample_batch
from skedit.pipelines.world.corpus import DocSampler
from skedit.pipelines.world.gen import World

log_ = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSpec:
    """Model shape and training schedule for one world size."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    steps: int
    batch: int
    lr: float
    warmup: int
    context_share: float  # fraction of tokens in context documents
    two_hop_share: float  # fraction of closed-book documents that are two-hop questions
    seq_len: int = 192  # packed row length
    questions_per_context: int = 6
    max_facts: int = 16
    ramp: float = 0.5  # fraction of the steps over which the context length grows to max_facts
    copy_stage: float = 0.3  # fraction of the steps that mostly ask plain copies of a context
    max_positions: int = 256
    mix: tuple[float, float, float] = (0.45, 0.2, 0.13)  # see DocSampler
    table_share: float = 0.0  # fraction of contexts laid out as relation tables
    same_relation_share: float = 0.0  # fraction of contexts whose facts share one relation
    weight_decay: float = 0.05  # AdamW decay on the weight matrices
    # "bf16": matrix products in bfloat16 (torch.autocast; weights and optimiser stay float32)
    # where the CPU has native bf16 (avx512_bf16/AMX), else float32. No size asks for it: at
    # these shapes bf16 steps were slower than float32 (README sec. 8)
    autocast: str | None = None


TRAIN_SPECS: dict[str, TrainSpec] = {
    "tiny": TrainSpec(64, 2, 4, 128, 120, 8, 3e-3, 20, 0.5, 0.1, seq_len=128, table_share=0.4),
    # small: 8 heads of 16 dims with an MLP of 192 (706k parameters; a step as cheap as the
    # earlier 4 heads of 32 with an MLP of 384) and AdamW weight decay 0.2 on the matrices,
    # 3000 float32 steps: seed 4242 (the default, shipped) reads 1 / 4 / 8 facts at 1.00 / .9975
    # / .98 after ~500 s on 2 Intel Xeon cores. Reading several facts means binding each value
    # to its subject, which is learnt late at a step that depends on the seed (README sec. 8,
    # one row per try). Weight decay 0.2 brought it from step ~4500 to ~2500 for seed 4242 and
    # to 1500-2500 for seeds 2 and 3, 3000 for seed 1, but seed 0 did not bind by 3000 (k=4
    # .615; its model reads one fact, not several, and `skedit world build` warns). 2500 steps
    # are too few for 4242 (k=4 .56). Same-relation contexts taught binding by subject (k=4
    # .64 -> .76 at 2400 steps); lr 1.5e-3 binds sooner than 2e-3. No bf16 autocast: at this shape bf16 steps were 0.72x
    # the float32 pace even on a CPU with native bf16, and float32 trains alike on every CPU.
    "small": TrainSpec(
        128,
        4,
        8,
        192,
        3000,
        16,
        1.5e-3,
        100,
        0.7,
        0.1,
        questions_per_context=10,
        copy_stage=0.2,
        mix=(0.35, 0.15, 0.12),
        same_relation_share=0.35,
        table_share=0.4,
        weight_decay=0.2,
    ),
}


def bf16_supported() -> bool:
    """Whether this CPU multiplies bfloat16 natively (else autocast emulates it, slower than
    float32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


PRECISIONS = ("auto", "fp32", "bf16")


def autocast_context(spec: TrainSpec, precision: str = "auto"):
    """``(context manager, precision name)`` for the training forward pass.

    ``precision``: ``"auto"`` follows ``spec.autocast`` where the CPU has native bf16,
    ``"fp32"`` forces float32 (what a CPU without bf16 trains in), ``"bf16"`` asks for bf16
    (float32 all the same where the CPU lacks it: emulated bf16 is slower than float32).
    """
    want = spec.autocast if precision == "auto" else precision
    if want == "bf16" and bf16_supported():
        return torch.autocast("cpu", dtype=torch.bfloat16), "bf16"
    return contextlib.nullcontext(), "fp32"


def make_model(spec: TrainSpec, vocab_size: int, tokenizer, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    )
    return LlamaForCausalLM(cfg)


def answer_loss(model, batch: dict[str, torch.Tensor], body=None) -> torch.Tensor:
    """Mean cross-entropy over the labelled (answer) tokens only.

    The LM head runs only where a label exists: with a 2k-word vocabulary it would otherwise
    cost a fifth of every step on positions whose logits are thrown away. ``body``: the
    transformer body to run (a compiled ``model.model``; default ``model.model`` itself).
    """
    hidden = (model.model if body is None else body)(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    ).last_hidden_state  # (B, L, d)
    target = batch["labels"][:, 1:]  # position t predicts token t + 1
    keep = target != -100
    logits = model.lm_head(hidden[:, :-1][keep])  # (n_answers, vocab)
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


COMPILES = ("auto", "on", "off")
# below this many steps compiling (10-50 s on 2 cores, once per process) costs more than it
# saves: 12-13% of a float32 step, 14-28% of a bf16 one on 2 Zen 4 cores (bench world-step)
COMPILE_MIN_STEPS = 1000


def compile_mode(value: str | None = None) -> str:
    """``value``, else ``$SKEDIT_COMPILE`` (``auto``, ``on``/``1``, ``off``/``0``), else auto."""
    raw = (value or os.environ.get("SKEDIT_COMPILE") or "auto").strip().lower()
    mode = {"1": "on", "0": "off", "true": "on", "false": "off"}.get(raw, raw)
    if mode not in COMPILES:
        raise ValueError(f"SKEDIT_COMPILE={raw!r}: use one of auto, on, off")
    return mode


def compiled_body(model, mode: str, steps: int):
    """The model's transformer body through ``torch.compile``, or None (``mode`` off, or auto in
    a run too short to pay for it). Only the body: its shapes are the same every step, while
    the LM head sees a different number of answer positions each time (a recompile per shape).
    The compile itself happens at the first step; :func:`train_world_model` falls back to
    eager there if it fails (no C++ compiler, say)."""
    if mode == "off" or (mode == "auto" and steps < COMPILE_MIN_STEPS):
        return None
    return torch.compile(model.model, dynamic=False)


def spec_sampler(world: World, spec: TrainSpec, seed: int) -> DocSampler:
    """The documents a build of ``spec`` trains on (its curriculum moves ``max_facts`` and
    ``copy_stage`` as the steps go)."""
    return DocSampler(
        world,
        seed,
        max_facts=spec.max_facts,
        mix=spec.mix,
        table_share=spec.table_share,
        same_relation_share=spec.same_relation_share,
    )


def make_optimizer(
    model, lr: float, *, weight_decay: float, fused: bool = True
) -> torch.optim.Optimizer:
    """AdamW (decay on matrices only), the fused CPU kernel where this torch has one (a few
    percent of a step at this model's size; more for larger ones). ``fused=False``: the
    per-tensor loop the build used before (``skedit bench world-step``'s baseline)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if fused:
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


def backward(model, body, batch: dict[str, torch.Tensor], autocast) -> torch.Tensor:
    """The answer loss of ``batch``, back-propagated; returns the loss."""
    with autocast:
        loss = answer_loss(model, batch, body)
    loss.backward()
    return loss


@contextlib.contextmanager
def deterministic():
    """torch's deterministic algorithms while it lasts (a warning, not an error, where an op
    has none), then the setting it found. Without them the compiled body's fused reductions
    add up in an order that depends on the threads: two 60-step builds of one seed differed,
    where eager builds are byte-identical."""
    was = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


class ThreadChooser:
    """Uses whichever torch thread count steps faster now, re-measured as the load changes.

    Every ``every`` steps it runs ``probe`` steps with the other count, then ``probe`` with the
    current one, and switches when the other's median step was at least 10% shorter.
    """

    def __init__(self, options: list[int], *, every: int = 250, probe: int = 5, start: int = 10):
        self.options = sorted(set(options))
        self.current = self.options[-1]
        self.every, self.probe, self.start = every, probe, start
        self.times: dict[int, list[float]] = {}

    def threads_for(self, step: int) -> int:
        phase = (step - self.start) % self.every if step >= self.start else -1
        if len(self.options) > 1 and 0 <= phase < self.probe:
            return self.other
        return self.current

    @property
    def other(self) -> int:
        return self.options[0] if self.current == self.options[-1] else self.options[-1]

    def record(self, step: int, threads: int, seconds: float) -> None:
        if len(self.options) == 1 or step < self.start:
            return
        phase = (step - self.start) % self.every
        if phase < 2 * self.probe:
            self.times.setdefault(threads, []).append(seconds)
        if phase == 2 * self.probe - 1:
            med = {t: sorted(v)[len(v) // 2] for t, v in self.times.items() if v}
            faster = self.other in med and self.current in med
            if faster and med[self.other] < 0.9 * med[self.current]:
                self.current = self.other
            self.times.clear()


# One readable training loop (as nanoGPT's train.py), longer than 80 lines on purpose: sampling,
# the step, thread choice and logging read top to bottom in the order they happen.
@deterministic()
def train_world_model(
    world: World,
    tokenizer,
    spec: TrainSpec,
    *,
    seed: int = 0,
    threads: int | str = 1,
    progress: bool = True,
    callback=None,
    precision: str = "auto",
    torch_compile: str | None = None,
):
    """Train a fresh model on the world; returns ``(model, log)`` (log: loss every 50 steps).

    ``threads``: a torch thread count, or ``"auto"`` (1 or 2, whichever steps faster now).
    ``torch_compile``: ``auto`` (default, or ``$SKEDIT_COMPILE``), ``on`` or ``off``; see
    :func:`compiled_body`.
    """
    auto = threads == "auto"
    chooser = ThreadChooser([1, min(2, os.cpu_count() or 1)] if auto else [int(threads)])
    torch.set_num_threads(chooser.current)
    model = make_model(spec, len(tokenizer), tokenizer, seed)
    model.train()
    sampler = spec_sampler(world, spec, seed)
    enc = FastEncoder(tokenizer)
    opt = make_optimizer(model, spec.lr, weight_decay=spec.weight_decay)
    body = compiled_body(model, compile_mode(torch_compile), spec.steps)

    def lr_at(step: int) -> float:
        if step < spec.warmup:
            return spec.lr * (step + 1) / spec.warmup
        t = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return spec.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    autocast, precision = autocast_context(spec, precision)  # decided once; re-entered every step
    log: list[dict] = []
    start = time.perf_counter()
    running = None
    bar = tqdm(range(spec.steps), desc="training world model", unit="step", disable=not progress)
    for step in bar:
        # curriculum: short contexts first (the copy is learnt there), up to max_facts by
        # ``ramp`` of the run
        ramp = max(1, int(spec.ramp * spec.steps))
        sampler.max_facts = min(spec.max_facts, 2 + (spec.max_facts - 2) * step // ramp)
        sampler.copy_stage = step < spec.copy_stage * spec.steps
        n_threads = chooser.threads_for(step)
        if n_threads != torch.get_num_threads():
            torch.set_num_threads(n_threads)
        t_step = time.perf_counter()
        batch = pack(sample_batch(sampler, enc, spec), spec.seq_len, tokenizer.pad_token_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        try:
            loss = backward(model, body, batch, autocast)
        except Exception as exc:  # the compile, at the first step: no C++ compiler, say
            if body is None or step > 0:
                raise
            log_.warning("torch.compile failed (%s); training eagerly", str(exc)[:200])
            body = None
            opt.zero_grad(set_to_none=True)
            loss = backward(model, body, batch, autocast)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        chooser.record(step, n_threads, time.perf_counter() - t_step)
        if step % 50 == 0 or step == spec.steps - 1:
            log.append(
                {
                    "step": step,
                    "loss": round(running, 4),
                    "seconds": round(time.perf_counter() - start, 1),
                    "threads": chooser.current,
                    "precision": precision,
                    "compiled": body is not None,
                }
            )
            bar.set_postfix(loss=f"{running:.3f}")
        if callback is not None and (step + 1) % 250 == 0 and step + 1 < spec.steps:
            model.eval()
            callback(step + 1, model)  # experiments: measure the curve during training
            model.train()
    model.eval()
    return model, log


def save_model(model, tokenizer, out: Path, extra: dict) -> None:
    """``save_pretrained`` (safetensors) + tokenizer + the world's config beside them."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "world_config.json").write_text(json.dumps(extra, indent=2, sort_keys=True) + "\n")
