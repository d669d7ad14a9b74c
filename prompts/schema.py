"""The data that flows through skedit: edits, probes, dense prompts, transfer examples.

Every type is a pydantic model so that it round-trips through JSON (files, LangGraph state,
LLM output) unchanged. Ids are derived from content when a dataset has none, so the same
record always gets the same id.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EditKind = Literal["insert", "modify", "erase"]
ProbeKind = Literal["edit", "rephrase", "portability", "locality"]
PromptStatus = Literal["draft", "passed", "failed", "approved", "edited", "rejected"]
# the statuses whose prompts are taught (and given to PROMPT): approved as is, or edited
APPROVED: frozenset[str] = frozenset({"approved", "edited"})


def content_id(*parts: Any, prefix: str = "", length: int = 12) -> str:
    """A stable id from content: the same parts always give the same id."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]
    return f"{prefix}{digest}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Probe(_Model):
    """A question whose answer tells whether an edit took (or whether unrelated knowledge stayed).

    ``answers`` holds aliases: any of them counts as right. For locality probes the answer that
    counts is the *pre-edit model's* recorded output (``expected``), not the dataset's gold.
    """

    prompt: str
    answers: list[str] = Field(default_factory=list)
    kind: ProbeKind
    edit_id: str | None = None
    subkind: str | None = None  # dataset category, e.g. "Reasoning", "same_subject", "two_hop"
    expected: str | None = None  # pre-edit model's greedy answer (locality reference)
    id: str = ""

    @model_validator(mode="after")
    def _default_id(self) -> Probe:
        if not self.id:
            self.id = content_id(self.kind, self.edit_id, self.prompt, self.answers, prefix="p-")
        return self

    @property
    def unanswered(self) -> bool:
        """A question with nothing to score it against (e.g. the questioner's extra multi-hop
        questions): the teacher answers it for the transfer set; checks skip it. Locality
        probes are scored against the pre-edit answer, so they never are."""
        return self.kind != "locality" and not self.answers


class Edit(_Model):
    """One requested change of a model's knowledge (EasyEdit / ROME request fields)."""

    id: str = ""
    subject: str
    prompt: str  # cloze or question that contains the subject; the target completes it
    target_new: str
    target_old: str | None = None
    kind: EditKind = "modify"
    relation: str | None = None
    rephrases: list[str] = Field(default_factory=list)
    portability: list[Probe] = Field(default_factory=list)
    locality: list[Probe] = Field(default_factory=list)
    source: str | None = None  # "file:record", for messages that point back at the data

    @field_validator("subject", "prompt", "target_new")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @model_validator(mode="after")
    def _default_id(self) -> Edit:
        if not self.id:
            self.id = content_id(self.subject, self.prompt, self.target_new, prefix="e-")
        for p in [*self.portability, *self.locality]:
            if p.edit_id is None:
                p.edit_id = self.id
        return self

    def probes(self) -> list[Probe]:
        """The edit's own probes: the edit prompt, rephrases, portability and locality items."""
        out = [Probe(prompt=self.prompt, answers=[self.target_new], kind="edit", edit_id=self.id)]
        out += [
            Probe(prompt=r, answers=[self.target_new], kind="rephrase", edit_id=self.id)
            for r in self.rephrases
        ]
        return out + list(self.portability) + list(self.locality)


class Critique(_Model):
    """One round of the critic's verdict on a dense prompt."""

    round: int
    passed: bool
    problems: list[str] = Field(default_factory=list)
    teacher_edit_accuracy: float | None = None
    teacher_locality: float | None = None
    teacher_portability: float | None = None


class DensePrompt(_Model):
    """A context the teacher reads: several facts written as densely as it can still use."""

    id: str = ""
    edit_ids: list[str]
    text: str
    tokens: int = 0
    facts_per_100_tokens: float = 0.0
    status: PromptStatus = "draft"
    critiques: list[Critique] = Field(default_factory=list)
    reviewer_note: str | None = None

    @model_validator(mode="after")
    def _defaults(self) -> DensePrompt:
        if not self.id:
            self.id = content_id(sorted(self.edit_ids), prefix="dp-", length=8)
        if self.tokens and not self.facts_per_100_tokens:
            self.facts_per_100_tokens = round(100.0 * len(self.edit_ids) / self.tokens, 2)
        return self

    @property
    def last_critique(self) -> Critique | None:
        return self.critiques[-1] if self.critiques else None


class TransferExample(_Model):
    """One row of the transfer set: what the student sees, and what it must answer.

    ``completion`` starts with a space (TRL concatenates prompt and completion as strings).
    For locality probes it is the base model's own no-prompt answer. ``known``: the completion
    is the probe's known answer, not the teacher's (the teacher got it wrong; the training
    config's ``known_targets``); its stored top-k is then that answer with probability 1.
    """

    prompt: str
    completion: str
    teacher_prompt: str  # the dense prompt + the same input: what the teacher saw
    kind: ProbeKind
    edit_id: str | None = None
    weight: float = 1.0
    subject: str | None = None  # the edit's subject, where the prompt names it
    teacher_topk: list[list[tuple[int, float]]] | None = None  # per completion token: (id, logp)
    known: bool = False
