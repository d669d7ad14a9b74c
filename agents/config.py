"""Settings of the agent stage, saved under ``agents:`` in ``DIR/config.yaml``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from skedit.agents.checkpoints import is_postgres_url, split_password
from skedit.prompts.errors import SkeditError, reject_unknown_keys

Backend = Literal["rules", "openai", "mixed"]
Layout = Literal["tables", "statements"]


@dataclass
class AgentsConfig:
    """How the analyst shards, the writer writes, and the critic judges. Defaults are offline."""

    backend: Backend = field(
        default="rules",
        metadata={
            "help": "who writes prompts and probes: 'rules' (offline), 'openai' (an LLM writes "
            "prompts, paraphrases and implication questions) or 'mixed' (rules write the "
            "prompts, the LLM the paraphrases rules lack and the implication questions)"
        },
    )
    llm_model: str = field(
        default="gpt-4o-mini",
        metadata={"help": "model name sent to the OpenAI-compatible endpoint"},
    )
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible endpoint (vLLM, Ollama, ...); key from OPENAI_API_KEY"
        },
    )
    llm_timeout: float = field(default=60.0, metadata={"help": "seconds per LLM request"})
    llm_max_retries: int = field(
        default=2, metadata={"help": "client retries on timeouts, 429 and 5xx answers"}
    )
    llm_max_tokens: int = field(
        default=1024, metadata={"help": "most tokens of one LLM answer (bounds a looping model)"}
    )
    llm_reasks: int = field(
        default=2, metadata={"help": "extra requests when the LLM answer is not valid JSON"}
    )
    shard_tokens: int = field(
        default=256,
        metadata={"help": "most tokens of the rendered context (teacher tokenizer) per prompt"},
    )
    max_facts: int = field(
        default=32, metadata={"help": "most facts per prompt (1 = one-fact-per-prompt baseline)"}
    )
    max_statements: int = field(
        default=16,
        metadata={
            "help": "most facts per prompt written one by one (statements, sentences); rows of "
            "relation tables count only against max_facts"
        },
    )
    layout: Layout = field(
        default="statements",  # the world recipe sets tables: its teacher learned to read them
        metadata={
            "help": "how the rules writer states facts that name a relation: 'tables' (one "
            "'relation: s1 t1 s2 t2.' per relation; shards are then grouped by relation) or "
            "'statements' ('s relation t.' each; shards grouped by subject)"
        },
    )
    critic_rephrases: int = field(
        default=0,
        metadata={
            "help": "rephrases per edit the critic asks the teacher (0 = all); with many "
            "generated rephrases and known_targets training, a few say whether it reads the prompt"
        },
    )
    max_rounds: int = field(
        default=3, metadata={"help": "writer/critic rounds per shard before it is marked failed"}
    )
    approve_failed: bool = field(
        default=False,
        metadata={
            "help": "--auto-approve also approves prompts that still fail the critic after "
            "max_rounds (their edits are taught, not dropped): for a teacher that reads facts "
            "weakly, with training.known_targets so the known answers, not the teacher's, are "
            "trained"
        },
    )
    min_edit_accuracy: float = field(
        default=0.95,
        metadata={"help": "teacher accuracy on edit prompts and rephrases needed to pass"},
    )
    min_locality: float = field(
        default=0.97,
        metadata={
            "help": "agreement with pre-edit answers on unrelated probes needed to pass (0: the "
            "critic asks the teacher only 2 per edit, for the figure; training takes their "
            "answers from the base model)"
        },
    )
    min_portability: float = field(
        default=0.0, metadata={"help": "teacher accuracy on multi-hop probes needed to pass"}
    )
    same_subject_locality: int = field(
        default=2, metadata={"help": "generated locality probes about the edit's own subject"}
    )
    other_subject_locality: int = field(
        default=2,
        metadata={
            "help": "generated locality probes: the edit's question about other known subjects"
        },
    )
    generated_rephrases: int = field(
        default=2, metadata={"help": "rephrases generated when an edit has none"}
    )
    relation_locality: int = field(
        default=0,
        metadata={
            "help": "locality probes per edit: its question about well-known subjects of its "
            "Wikidata relation (skedit.prompts.relations.WELL_KNOWN), which keep their answers; "
            "first those the model answers with the edit's old object"
        },
    )
    near_miss_locality: int = field(
        default=0,
        metadata={
            "help": "locality probes per edit: its question about look-alike names (a word of "
            "its subject swapped for a word of another subject), which keep the base model's "
            "answers; first those it answers with the edit's old object"
        },
    )
    associate_locality: int = field(
        default=0,
        metadata={
            "help": "locality probes per edit: its question about the names the base model "
            "lists beside its subject (Picasso and Matisse beside Georges Pompidou: what the "
            "model holds close to it, and so what an edit drags along), which keep the base model's "
            "answers; first those it answers with the edit's old object"
        },
    )
    general_locality: int = field(
        default=0,
        metadata={
            "help": "general-knowledge questions (skedit.prompts.relations.GENERAL) added as "
            "locality probes to each batch: anchors that keep what the model knows elsewhere"
        },
    )
    generated_portability: int = field(
        default=3,
        metadata={
            "help": "extra multi-hop probes per edit, from the batch's multi-hop questions of the "
            "same relation (the teacher answers them for the transfer set; not scored)"
        },
    )
    probe_max_new_tokens: int = field(
        default=8, metadata={"help": "tokens the teacher generates per probe"}
    )
    batch_size: int = field(default=64, metadata={"help": "teacher batch size"})
    allow_conflicts: bool = field(
        default=False,
        metadata={"help": "keep the first of conflicting edits instead of stopping"},
    )
    device: str | None = field(default=None, metadata={"help": "teacher device (auto if unset)"})
    checkpointer: str | None = field(
        default=None,
        metadata={
            "help": "where the graph's state is saved: unset = DIR/agents.sqlite; a "
            "postgresql://USER@HOST:PORT/DB URL = that database (password from PGPASSWORD or "
            "~/.pgpass; one given in the URL is used but never saved)"
        },
    )

    def __post_init__(self) -> None:
        if self.backend not in ("rules", "openai", "mixed"):
            raise SkeditError(
                f"unknown backend {self.backend!r}",
                field="backend",
                hint="use rules, openai or mixed",
            )
        if self.layout not in ("tables", "statements"):
            raise SkeditError(
                f"unknown layout {self.layout!r}", field="layout", hint="use tables or statements"
            )
        for name in ("shard_tokens", "max_facts", "max_statements", "max_rounds"):
            if int(getattr(self, name)) < 1:
                raise SkeditError(f"{name} must be at least 1", field=name)
        self._checkpointer_password: str | None = None
        if self.checkpointer:
            # the password stays in this object only: never in config.yaml, logs or messages
            url, self._checkpointer_password = split_password(str(self.checkpointer))
            if not is_postgres_url(url):
                raise SkeditError(
                    f"not a PostgreSQL URL: {url!r}",
                    field="checkpointer",
                    hint="use postgresql://USER@HOST:PORT/DB, or leave it unset for "
                    "DIR/agents.sqlite",
                )
            self.checkpointer = url

    @property
    def checkpointer_password(self) -> str | None:
        """The password given inside the checkpointer URL, if any (kept out of every field)."""
        return self._checkpointer_password

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AgentsConfig:
        """Build from a saved section; unknown keys are an error (a typo would be ignored)."""
        data = dict(data or {})
        reject_unknown_keys(
            data, {f.name for f in fields(cls)}, what="agents setting(s)", field_prefix="agents"
        )
        return cls(**data)
