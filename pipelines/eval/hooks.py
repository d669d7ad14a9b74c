"""What a model's source adds to the evaluation harness, passed in by the caller.

The harness knows nothing about where a model comes from. A source that knows more (the
synthetic world: its held-out text, the tokens of a line's answer, closed-book recall of the
facts no edit touched) hands the harness an :class:`EvalHook`; ``skedit eval`` and ``skedit run``
ask the installed plugins for one (``skedit.pipelines.plugins.eval_hook_for``; the world's is in
``world/hooks.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class EvalHook:
    """Extra measurements and texts for runs whose base model comes from a known source."""

    name: str  # where the model comes from, for the report ("world held-out text (DIR)")
    # perplexity on the last N tokens of each held-out line (a line's answer); None: all tokens
    answer_tokens: int | None = None
    heldout: Callable[[], list[str]] | None = None  # held-out text when --heldout is not given
    heldout_source: str = ""
    retention: Callable[[], list[str]] | None = None  # text for retention fine-tuning
    retention_source: str = ""
    # (model, tokenizer, seed) -> extra metrics, e.g. {"world_recall": {"mean", "n", "ci"}}
    capability: Callable[..., dict] | None = None
    # () -> a text file (one text per line) behind ROME/MEMIT/AlphaEdit's key statistics,
    # used when the editor's hyper-parameters name no corpus
    key_stats: Callable[[], str] | None = None


# (base model path, run config) -> a hook, or None when the source adds nothing
HookFactory = Callable[[str, dict], EvalHook | None]
