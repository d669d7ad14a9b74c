"""The seam every agent backend sits behind, and the factory that picks one."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from skedit.prompts.schema import Edit

if TYPE_CHECKING:
    from skedit.agents.config import AgentsConfig


class Questions(BaseModel):
    rephrases: list[str] = Field(default_factory=list)
    portability: list[dict[str, str]] = Field(default_factory=list)  # {"prompt", "answer"}


class AgentBackend(Protocol):
    name: str
    # the questioner asks :meth:`questions` about every edit the dataset gives no rephrases for
    # (True), or only about those the relation templates cannot fill (False)
    asks_all: bool
    # its rephrases are used instead of the templates' (True), or only where they have none
    replaces_rule_rephrases: bool

    def write(
        self,
        edits: list[Edit],
        *,
        sentence_form: set[str],
        feedback: list[str],
        statement_form: Collection[str] = (),
    ) -> str:
        """One dense prompt stating every edit, in the given order (``statement_form``: edits
        to state on their own rather than in a relation table)."""
        ...

    def questions(self, edits: list[Edit], *, n_rephrases: int) -> dict[str, Questions]:
        """Extra rephrases / multi-hop probes for edits that lack them (by edit id)."""
        ...

    def review_text(self, edits: list[Edit], text: str) -> list[str]:
        """Problems a reader finds in the text (beyond the deterministic checks)."""
        ...


def make_backend(config: AgentsConfig) -> AgentBackend:
    """The backend ``config.backend`` names (``openai``, ``mixed``; anything else: ``rules``)."""
    if config.backend == "openai":
        from skedit.agents.backends.openai import OpenAIBackend

        return OpenAIBackend(config)
    if config.backend == "mixed":
        from skedit.agents.backends.openai import MixedBackend

        return MixedBackend(config)
    from skedit.agents.backends.rules import RulesBackend

    return RulesBackend(config.layout)
