"""Heavy objects the nodes use, passed as the graph's ``context`` (never checkpointed).

A resuming process rebuilds the context from the run directory's config; the teacher is loaded
on first use, so a review that only approves never loads a model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from skedit.agents.backends.base import AgentBackend, make_backend
from skedit.agents.config import AgentsConfig
from skedit.prompts.render import context_prefix


@dataclass
class AgentsContext:
    config: AgentsConfig
    model_path: str
    backend: AgentBackend | None = None
    _teacher: tuple[Any, Any] | None = field(default=None, repr=False)
    # shards run as parallel tasks; the teacher serves one at a time (one model, few cores)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = make_backend(self.config)

    def teacher(self) -> tuple[Any, Any]:
        """``(model, tokenizer)`` of the teacher: the base model, loaded once."""
        with self.lock:
            if self._teacher is None:
                from skedit.sft.modelops import load_model

                self._teacher = load_model(self.model_path, device=self.config.device)
            return self._teacher

    def tokenizer(self) -> Any:
        return self.teacher()[1]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the teacher's tokenizer (no special tokens)."""
        tok = self.tokenizer()
        with self.lock:  # a fast tokenizer mutates its settings per call: not thread-safe
            return len(tok(text, add_special_tokens=False)["input_ids"])

    def context_tokens(self, text: str) -> int:
        """Tokens of the rendered context the teacher reads: what the budget limits."""
        return self.count_tokens(context_prefix(text))
