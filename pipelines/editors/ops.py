"""What ROME, MEMIT and AlphaEdit share: where the subject is, its key, the value to write.

An edit request is ``(prompt containing the subject, target_new)``. Its *key* at a layer is the
input of the MLP output projection at the subject's last token, averaged over the prompt alone
and the prompt behind a few short texts sampled from the model (so the edit does not depend on
the prompt starting the text). Its *value* is a vector ``δ`` that, added at the subject's last
token (to the MLP output for ROME, to the residual stream for MEMIT), makes the model answer
``target_new``; it is found by a few steps of Adam on the target's negative log-likelihood with
a KL term that keeps the model's idea of the subject, weight decay and a norm clamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit
from skedit.sft import arch, batching
from skedit.sft.modelops import encode_target


@dataclass
class EditorHparams:
    """Settings every locate-then-edit method shares. Defaults suit the synthetic world model."""

    # sampled texts put before the prompt (plus the bare prompt). 0 on the world model: with the
    # key at the prompt's last token a prefix changes the key itself, so the averaged key misses
    # the one the bare prompt gives and later edits overwrite earlier ones (ROME .81 -> .98)
    context_prefixes: int = 0
    prefix_tokens: int = 5  # length of each sampled prefix
    steps: int = 50  # Adam steps of the value optimisation
    lr: float = 0.5  # Adam learning rate of δ
    # weight of KL(original ‖ edited) on the kl_prompt (0.0625 in ROME; real-model recipes set
    # it). 1.0 on the world model: with the key at the last token, the KL row is the bare
    # subject, so this keeps δ from changing what follows the name outside the fact prompt
    kl_factor: float = 1.0
    kl_prompt: str = "{}"  # "{}" is the subject; ROME uses "{} is a" for real models
    # where the key is read and the value written: the subject's last token (ROME's choice for
    # real models), or the prompt's last token (where `skedit trace` finds the world model's
    # facts: its first MLP looks them up at the last token)
    fact_token: str = "last"
    weight_decay: float = 0.5  # penalty on ‖δ‖² / ‖original value‖²
    clamp_norm: float = 4.0  # ‖δ‖ ≤ clamp_norm · ‖original value‖
    loss_stop: float = 0.05  # stop early once the target's mean NLL is below this
    corpus: str | None = None  # key statistics text: a file, dataset:NAME, or None (see docs)
    samples: int = 2000  # texts of the corpus used for the key statistics
    max_length: int = 128  # tokens per corpus text
    ridge: float = 1e-4  # added to C (relative to its mean eigenvalue) so it can be inverted
    seed: int = 0
    cache_dir: str | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes carried into reports


def coerce_hparams(cls: type, hparams) -> EditorHparams:
    """``hparams`` as ``cls``: None → defaults; a dict (from YAML/JSON) → checked fields."""
    if hparams is None:
        return cls()
    if isinstance(hparams, cls):
        return hparams
    if isinstance(hparams, EditorHparams):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in vars(hparams).items() if k in known})
    if isinstance(hparams, dict):
        hparams = dict(hparams)
        recipe = hparams.pop("recipe", None)
        base = {}
        if recipe is not None:
            from skedit.pipelines.editors.rome import load_recipe  # lazy: rome imports this module

            base = load_recipe(recipe, cls.method)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(hparams) - known)
        if unknown:
            raise SkeditError(
                f"unknown {cls.method} hyper-parameter(s): {', '.join(unknown)}",
                field=unknown[0],
                hint=f"known: {', '.join(sorted(known))}",
            )
        return cls(**{**base, **hparams})
    raise SkeditError(f"{cls.method} hparams must be a mapping, got {type(hparams).__name__}")


def edit_prompt(edit: Edit) -> str:
    """The request's prompt with the subject filled in (CounterFact writes ``{}``)."""
    return edit.prompt.replace("{}", edit.subject) if "{}" in edit.prompt else edit.prompt


def _subject_chars(prompt: str, subject: str) -> tuple[int, int]:
    pos = prompt.rfind(subject)
    if pos < 0:
        pos = prompt.lower().rfind(subject.lower())
    if pos < 0:
        raise SkeditError(
            f"the subject {subject!r} does not occur in the prompt {prompt!r}",
            field="subject",
            hint="locate-then-edit methods need the subject inside the prompt",
        )
    return pos, pos + len(subject)


def subject_span(tokenizer, text: str, subject: str) -> tuple[list[int], int, int]:
    """Ids of ``text`` (BOS first, if the tokenizer adds one) and the indices of the subject's
    first and last tokens in them (its last occurrence, which is the one in the prompt)."""
    start, end = _subject_chars(text, subject)
    head = tokenizer("", add_special_tokens=True)["input_ids"]
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start and e > s]
        first, last = inside[0], inside[-1]
    except (NotImplementedError, ValueError, KeyError, TypeError, IndexError):
        # slow tokenizers have no offsets: count the tokens of the text before/through the subject
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        first = len(tokenizer(text[:start], add_special_tokens=False)["input_ids"]) if start else 0
        last = len(tokenizer(text[:end], add_special_tokens=False)["input_ids"]) - 1
    return head + ids, len(head) + first, len(head) + max(first, last)


def encode_with_subject(tokenizer, text: str, subject: str) -> tuple[list[int], int]:
    """Ids of ``text`` and the index of the subject's last token in them."""
    ids, _, last = subject_span(tokenizer, text, subject)
    return ids, last


def with_prefixes(prompt: str, prefixes: Sequence[str]) -> list[str]:
    """The bare prompt, then the prompt behind each prefix."""
    return [prompt] + [f"{p}. {prompt}" if p else prompt for p in prefixes]


@dataclass
class Batch:
    """Right-padded rows; ``edit_of[r]`` says which edit row ``r`` belongs to."""

    ids: torch.Tensor  # (rows, width)
    mask: torch.Tensor  # (rows, width)
    key_pos: torch.Tensor  # (rows,) the key token (subject's last, or prompt's last)
    edit_of: torch.Tensor  # (rows,)
    target_pos: list[list[int]]  # positions whose logits predict the target tokens
    target_ids: list[list[int]]
    kl_rows: torch.Tensor  # (rows,) bool: a KL row (no target)


FACT_TOKENS = ("subject_last", "last")


def build_batch(
    tokenizer,
    edits: Sequence[Edit],
    prefixes: Sequence[str],
    kl_prompt: str | None,
    device,
    fact_token: str = "subject_last",
) -> Batch:
    """Rows for the keys and the value optimisation: each edit's prompt with every prefix,
    followed by the target minus its last token; then one KL row per edit. The key token is
    the subject's last token, or the prompt's last token (``fact_token="last"``)."""
    if fact_token not in FACT_TOKENS:
        raise SkeditError(
            f"unknown fact_token {fact_token!r}", field="fact_token", hint=f"one of {FACT_TOKENS}"
        )
    rows, subj, owner, tpos, tids, kl = [], [], [], [], [], []
    for i, edit in enumerate(edits):
        prompt = edit_prompt(edit)
        target = encode_target(tokenizer, prompt, edit.target_new)
        if not target:
            raise SkeditError("the target is empty after tokenisation", record=edit.id)
        for text in with_prefixes(prompt, prefixes):
            ids, pos = encode_with_subject(tokenizer, text, edit.subject)
            pos = len(ids) - 1 if fact_token == "last" else pos
            rows.append(ids + target[:-1])
            subj.append(pos)
            owner.append(i)
            tpos.append([len(ids) - 1 + j for j in range(len(target))])
            tids.append(target)
            kl.append(False)
    if kl_prompt:
        for i, edit in enumerate(edits):
            ids, pos = encode_with_subject(tokenizer, kl_prompt.format(edit.subject), edit.subject)
            pos = len(ids) - 1 if fact_token == "last" else pos
            rows.append(ids)
            subj.append(pos)
            owner.append(i)
            tpos.append([len(ids) - 1])
            tids.append([])
            kl.append(True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = batching.pad(rows, pad, left=False, device=device)
    return Batch(
        ids=ids,
        mask=mask,
        key_pos=torch.tensor(subj, device=device),
        edit_of=torch.tensor(owner, device=device),
        target_pos=tpos,
        target_ids=tids,
        kl_rows=torch.tensor(kl, device=device),
    )


def _hidden(out):
    return out[0] if isinstance(out, tuple) else out


def _replace_hidden(out, hidden):
    return (hidden, *out[1:]) if isinstance(out, tuple) else hidden


@torch.no_grad()
def subject_keys(model, batch: Batch, layer: int, n_edits: int) -> torch.Tensor:
    """Keys ``(n_edits, m)``: the MLP output projection's input at the key token,
    averaged over each edit's prompt rows (KL rows excluded)."""
    captured = {}
    handle = arch.mlp_out(model, layer).register_forward_hook(
        lambda _m, args, _o: captured.__setitem__("k", args[0].detach())
    )
    try:
        with _one_logit(model, batch):  # the hook's capture is all that is needed
            model(input_ids=batch.ids, attention_mask=batch.mask)
    finally:
        handle.remove()
    rows = torch.arange(batch.ids.shape[0], device=batch.ids.device)
    k = captured["k"][rows, batch.key_pos].float()  # (rows, m)
    return _average(k[~batch.kl_rows], batch.edit_of[~batch.kl_rows], n_edits)


@torch.no_grad()
def subject_outputs(model, batch: Batch, module: nn.Module, n_edits: int) -> torch.Tensor:
    """``module``'s output at the key token, averaged per edit: ``(n_edits, d)``."""
    captured = {}
    handle = module.register_forward_hook(
        lambda _m, _a, out: captured.__setitem__("h", _hidden(out).detach())
    )
    try:
        with _one_logit(model, batch):  # the hook's capture is all that is needed
            model(input_ids=batch.ids, attention_mask=batch.mask)
    finally:
        handle.remove()
    rows = torch.arange(batch.ids.shape[0], device=batch.ids.device)
    h = captured["h"][rows, batch.key_pos].float()
    return _average(h[~batch.kl_rows], batch.edit_of[~batch.kl_rows], n_edits)


def _one_logit(model, batch: Batch):
    """Logits of one position only (hidden states are what a capture needs; the full logits of
    660 rows would take 3.9 GB)."""
    zero = torch.zeros(1, dtype=torch.long, device=batch.ids.device)
    return logits_only_at(model, zero, zero)


def _average(x: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    total = torch.zeros(n, x.shape[1], device=x.device, dtype=x.dtype)
    total.index_add_(0, owner, x)
    counts = torch.bincount(owner, minlength=n).clamp(min=1).to(x.dtype)
    return total / counts[:, None]


@dataclass
class TargetIndex:
    """Where the target tokens are in a :class:`Batch`, flattened over rows."""

    rows: torch.Tensor  # (T,) row of each target token
    positions: torch.Tensor  # (T,) position whose logits predict it
    tokens: torch.Tensor  # (T,) the token id
    row_of_token: torch.Tensor  # (T,) index into the target rows
    row_len: torch.Tensor  # (R,) tokens per target row
    edit_of_row: torch.Tensor  # (R,) edit of each target row

    @classmethod
    def of(cls, batch: Batch) -> TargetIndex:
        dev = batch.ids.device
        rows = [r for r in range(len(batch.target_ids)) if not batch.kl_rows[r]]
        row_len = torch.tensor([len(batch.target_ids[r]) for r in rows], device=dev)
        return cls(
            rows=torch.tensor([r for r in rows for _ in batch.target_pos[r]], device=dev),
            positions=torch.tensor([p for r in rows for p in batch.target_pos[r]], device=dev),
            tokens=torch.tensor([t for r in rows for t in batch.target_ids[r]], device=dev),
            row_of_token=torch.repeat_interleave(torch.arange(len(rows), device=dev), row_len),
            row_len=row_len,
            edit_of_row=batch.edit_of[rows],
        )


def edit_nll(logits: torch.Tensor, idx: TargetIndex, n_edits: int) -> torch.Tensor:
    """Target NLL per edit ``(n_edits,)``: mean over each row's target tokens, then mean over
    the edit's rows (its prompt with each prefix). ``logits``: ``(rows, width, vocab)``, or
    ``(T, vocab)`` already at the target tokens (:func:`logits_only_at`)."""
    picked = logits[idx.rows, idx.positions] if logits.dim() == 3 else logits
    logp = torch.log_softmax(picked.float(), -1)
    tok_nll = -logp.gather(-1, idx.tokens[:, None]).squeeze(-1)
    dev = logits.device
    row_nll = torch.zeros(len(idx.row_len), device=dev).index_add(0, idx.row_of_token, tok_nll)
    row_nll = row_nll / idx.row_len.float()
    per_edit = torch.zeros(n_edits, device=dev).index_add(0, idx.edit_of_row, row_nll)
    counts = torch.bincount(idx.edit_of_row, minlength=n_edits).clamp(min=1).float()
    return per_edit / counts


def kl_from_reference(ref_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(reference ‖ current)`` per row, from the reference's log-probs and current logits."""
    cur = torch.log_softmax(logits.float(), -1)
    return (ref_logp.exp() * (ref_logp - cur)).sum(-1)


@contextmanager
def logits_only_at(model, rows: torch.Tensor, positions: torch.Tensor):
    """Inside, the model's output head computes logits only at ``(rows[i], positions[i])``:
    ``model(...).logits`` is ``(1, N, vocab)``. The value optimisation needs logits at the target
    tokens and the KL rows only; the full ``(rows, width, vocab)`` tensor of 60 MEMIT edits (660
    rows of ~30 tokens, SmolLM2's vocabulary of 49k) is 3.9 GB per forward in float32, more
    with its gradient, and ran a 24 GB machine out of memory."""
    head = model.get_output_embeddings()

    def pick(_module, args):
        return (args[0][rows, positions][None], *args[1:])

    handle = head.register_forward_pre_hook(pick)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def frozen(model):
    """Model in eval mode with no parameter requiring grad; restored afterwards."""
    was_training = model.training
    requires = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
        model.train(was_training)


def optimise_values(
    model, batch: Batch, module: nn.Module, n_edits: int, hp: EditorHparams
) -> tuple[torch.Tensor, dict]:
    """``δ`` per edit ``(n_edits, d)``: added to ``module``'s output at the key token
    of every row of that edit, it makes the model give the edit's target.

    The edits are optimised together but independently: each δ only touches its own rows and
    Adam is element-wise, so this equals one optimisation per edit, in one batch.
    """
    rows = torch.arange(batch.ids.shape[0], device=batch.ids.device)
    base = subject_outputs(model, batch, module, n_edits)  # (n, d) original values
    base_norm = base.norm(dim=-1).clamp(min=1e-6)
    delta = torch.zeros_like(base, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=hp.lr)
    idx = TargetIndex.of(batch)
    kl_rows = batch.kl_rows.nonzero().flatten().tolist()
    kl_pos = torch.tensor([batch.target_pos[r][0] for r in kl_rows], device=rows.device)
    n_tok = len(idx.rows)  # logits: the target tokens, then the KL rows
    pick_rows = torch.cat([idx.rows, torch.tensor(kl_rows, dtype=torch.long, device=rows.device)])
    pick_pos = torch.cat([idx.positions, kl_pos.long()])
    with torch.no_grad(), logits_only_at(model, pick_rows, pick_pos):
        flat = model(input_ids=batch.ids, attention_mask=batch.mask).logits[0]
        ref_logp = torch.log_softmax(flat[n_tok:].float(), -1)  # (n_kl, vocab)

    def add_delta(_m, _a, out):
        h = _hidden(out)
        add = torch.zeros_like(h)
        add[rows, batch.key_pos] = delta[batch.edit_of].to(h.dtype)
        return _replace_hidden(out, h + add)

    info = {"steps": 0, "nll": float("nan")}
    handle = module.register_forward_hook(add_delta)
    with frozen(model), logits_only_at(model, pick_rows, pick_pos):
        try:
            for step in range(hp.steps):
                opt.zero_grad()
                flat = model(input_ids=batch.ids, attention_mask=batch.mask).logits[0]
                nll = edit_nll(flat[:n_tok], idx, n_edits)
                info = {"steps": step + 1, "nll": float(nll.detach().mean())}
                if float(nll.detach().max()) < hp.loss_stop:
                    break
                loss = nll.sum() + hp.weight_decay * ((delta.norm(dim=-1) / base_norm) ** 2).sum()
                if kl_rows and hp.kl_factor:
                    loss = loss + hp.kl_factor * kl_from_reference(ref_logp, flat[n_tok:]).sum()
                loss.backward()
                opt.step()
                with torch.no_grad():  # keep each δ within clamp_norm · ‖original value‖
                    limit = hp.clamp_norm * base_norm
                    delta.mul_(
                        (limit / delta.norm(dim=-1).clamp(min=1e-12)).clamp(max=1.0)[:, None]
                    )
        finally:
            handle.remove()
    return delta.detach(), info


def regularised_inverse(c: torch.Tensor, ridge: float) -> torch.Tensor:
    """``(C + ridge · mean eigenvalue · I)⁻¹`` in float64 (C from a finite corpus may be
    singular, and the keys of rare subjects live in its small directions)."""
    c = c.double()
    m = c.shape[0]
    scale = float(torch.trace(c)) / m
    return torch.linalg.inv(c + ridge * max(scale, 1e-12) * torch.eye(m, dtype=c.dtype))
