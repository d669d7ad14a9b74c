"""The deterministic, offline backend: the rules writer."""

from __future__ import annotations

from collections.abc import Collection

from skedit.agents.backends.base import Questions
from skedit.agents.backends.layout import layout_text
from skedit.prompts.schema import Edit


class RulesBackend:
    """Relation tables and canonical statements (:func:`layout_text`); probes come from the
    questioner's templates."""

    name = "rules"
    asks_all = False
    replaces_rule_rephrases = False

    def __init__(self, layout: str = "statements") -> None:
        self.layout = layout

    def write(
        self,
        edits: list[Edit],
        *,
        sentence_form: set[str],
        feedback: list[str],
        statement_form: Collection[str] = (),
    ) -> str:
        return layout_text(
            edits, sentence_form=sentence_form, statement_form=statement_form, layout=self.layout
        )

    def questions(self, edits: list[Edit], *, n_rephrases: int) -> dict[str, Questions]:
        return {}

    def review_text(self, edits: list[Edit], text: str) -> list[str]:
        return []


# --- openai -------------------------------------------------------------------------------
