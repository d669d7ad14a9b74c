"""Who writes prompts and probes: ``rules`` (deterministic, offline) or ``openai`` (an LLM).

Both sit behind :class:`AgentBackend`; nodes never know which one runs. Fact text is untrusted:
the ``openai`` backend sends it as JSON inside ``<facts>`` tags, and no backend output ever
decides routing — the critic's measurements and the reviewer do.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Collection
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field, ValidationError

from skedit.prompts.errors import SkeditError
from skedit.prompts.render import compact_statement, fact_statement, relation_tables
from skedit.prompts.schema import Edit

if TYPE_CHECKING:
    from skedit.agents.config import AgentsConfig


def statement(edit: Edit, *, sentence: bool = False) -> str:
    """The canonical statement of an edit: compact when it names a relation, else a sentence."""
    if edit.relation and not sentence:
        return compact_statement(edit.subject, edit.relation, edit.target_new)
    return fact_statement(edit.prompt, edit.target_new)


def layout_text(
    edits: list[Edit],
    *,
    sentence_form: Collection[str] = (),
    statement_form: Collection[str] = (),
    layout: str = "tables",
) -> str:
    """The rules writer's text for ``edits``, in their order.

    ``layout="tables"``: edits that name a relation are laid out relation by relation (one
    ``relation: s1 t1 s2 t2.`` table per relation, at the place of its first edit); the rest,
    and edits in ``statement_form`` or ``sentence_form``, as :func:`statement` (compact, or a
    full sentence for ``sentence_form``). ``"statements"``: one statement each.
    """
    segments: dict[tuple[str, str], list[Edit]] = {}
    for e in edits:
        own_statement = e.id in sentence_form or e.id in statement_form
        if layout == "tables" and e.relation and not own_statement:
            key = ("table", e.relation.strip())
        else:
            key = ("fact", e.id)
        segments.setdefault(key, []).append(e)
    out: list[str] = []
    for (kind, _), es in segments.items():
        if kind == "table":
            out += relation_tables([(e.subject, e.relation or "", e.target_new) for e in es])
        else:
            out += [statement(e, sentence=e.id in sentence_form) for e in es]
    return " ".join(out)


def table_rows(
    edits: list[Edit], *, layout: str = "tables", out_of_table: Collection[str] = ()
) -> set[str]:
    """Ids of the ``edits`` that :func:`layout_text` writes as rows of a relation table: with
    the tables layout, those whose relation has another edit in the table (a relation's only
    fact is a compact statement). ``out_of_table``: ids stated on their own whatever they are."""
    if layout != "tables":
        return set()
    tabled = [e for e in edits if e.relation and e.id not in out_of_table]
    per_relation = Counter((e.relation or "").strip() for e in tabled)
    return {e.id for e in tabled if per_relation[(e.relation or "").strip()] > 1}


def load_template(name: str) -> str:
    """An agent instruction template shipped in ``skedit.prompts`` (``writer``, ``critic``, ...)."""
    return files("skedit.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")


class Questions(BaseModel):
    rephrases: list[str] = Field(default_factory=list)
    portability: list[dict[str, str]] = Field(default_factory=list)  # {"prompt", "answer"}


class AgentBackend(Protocol):
    name: str

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


class RulesBackend:
    """Relation tables and canonical statements (:func:`layout_text`); probes come from the
    questioner's templates."""

    name = "rules"

    def __init__(self, layout: str = "tables") -> None:
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


class _WriterOut(BaseModel):
    text: str


class _QuestionItem(BaseModel):
    id: str
    rephrases: list[str] = Field(default_factory=list)
    portability: list[dict[str, str]] = Field(default_factory=list)


class _QuestionerOut(BaseModel):
    items: list[_QuestionItem]


class _CriticProblem(BaseModel):
    id: str
    problem: str


class _CriticOut(BaseModel):
    problems: list[_CriticProblem] = Field(default_factory=list)


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Objects closed and fully required, as strict JSON-schema output demands."""
    if schema.get("type") == "object":
        props = schema.get("properties", {})
        schema["additionalProperties"] = False
        schema["required"] = list(props)
        for v in props.values():
            _strict(v)
    if schema.get("type") == "array":
        _strict(schema.get("items", {}))
    return schema


_PAIR = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}, "answer": {"type": "string"}},
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "writer": _strict({"type": "object", "properties": {"text": {"type": "string"}}}),
    "questioner": _strict(
        {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "rephrases": {"type": "array", "items": {"type": "string"}},
                            "portability": {"type": "array", "items": dict(_PAIR)},
                        },
                    },
                }
            },
        }
    ),
    "critic": _strict(
        {
            "type": "object",
            "properties": {
                "problems": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}, "problem": {"type": "string"}},
                    },
                }
            },
        }
    ),
}

_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


def facts_block(payload: dict[str, Any]) -> str:
    """Untrusted data as JSON inside ``<facts>`` tags; ``<`` is escaped so no text closes them."""
    blob = json.dumps(payload, ensure_ascii=False, indent=1).replace("<", "\\u003c")
    return f"<facts>\n{blob}\n</facts>"


def _fact(e: Edit, sentence: bool = False) -> dict[str, Any]:
    return {
        "id": e.id,
        "subject": e.subject,
        "relation": e.relation,
        "prompt": e.prompt,
        "target": e.target_new,
        "statement": statement(e, sentence=sentence),
    }


class OpenAIBackend:
    """Any OpenAI-compatible endpoint through the official client, with JSON-schema output.

    Timeouts and HTTP retries are the client's (one layer); a malformed or truncated answer is
    re-asked here a bounded number of times. Errors name the endpoint and model, never the key.
    """

    name = "openai"

    def __init__(self, config: AgentsConfig, client: Any | None = None) -> None:
        self.config = config
        self.endpoint = config.base_url or "https://api.openai.com/v1"
        self._key = os.environ.get("OPENAI_API_KEY", "")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            if not self._key and not self.config.base_url:
                raise SkeditError(
                    "the openai backend needs OPENAI_API_KEY (or --base-url for a local server)",
                    hint="export OPENAI_API_KEY=..., or use --backend rules",
                )
            self._client = openai.OpenAI(
                base_url=self.config.base_url,
                api_key=self._key or "not-needed",  # local servers ignore it; must be non-empty
                timeout=self.config.llm_timeout,
                max_retries=self.config.llm_max_retries,
            )
        return self._client

    def _where(self) -> str:
        return f"LLM endpoint {self.endpoint} (model {self.config.llm_model})"

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def ask(self, template: str, payload: dict[str, Any], out: type[BaseModel]) -> BaseModel:
        """One structured request: template as system message, data in ``<facts>`` tags."""
        import openai

        messages: list[dict[str, str]] = [
            {"role": "system", "content": load_template(template)},
            {"role": "user", "content": facts_block(payload)},
        ]
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": template, "schema": SCHEMAS[template], "strict": True},
        }
        problem = ""
        for _ in range(1 + max(0, self.config.llm_reasks)):
            try:
                resp = self.client.chat.completions.create(
                    model=self.config.llm_model,
                    messages=messages,
                    response_format=response_format,
                    temperature=0,
                )
            except openai.APITimeoutError as exc:
                raise SkeditError(
                    f"{self._where()} did not answer within {self.config.llm_timeout:g} s "
                    f"({self.config.llm_max_retries} retries)",
                    hint="raise llm_timeout, check the server, or use --backend rules",
                ) from exc
            except openai.APIStatusError as exc:
                raise SkeditError(
                    f"{self._where()} answered HTTP {exc.status_code}: "
                    f"{self._redact(str(exc.message))[:300]}",
                    hint="check --base-url, --llm-model and OPENAI_API_KEY",
                ) from exc
            except openai.APIConnectionError as exc:
                raise SkeditError(
                    f"cannot reach {self._where()}: {self._redact(str(exc))[:200]}",
                    hint="check --base-url and that the server is running",
                ) from exc
            choice = resp.choices[0] if resp.choices else None
            content = (choice.message.content or "") if choice else ""
            if choice is None:
                problem = "the answer had no choices"
            elif choice.finish_reason == "length":
                problem = "the answer was cut off (finish_reason=length)"
            else:
                try:
                    return out.model_validate(json.loads(_FENCE.sub("", content)))
                except (json.JSONDecodeError, ValidationError) as exc:
                    problem = f"not valid JSON for the schema: {str(exc).splitlines()[0][:200]}"
            messages += [
                {"role": "assistant", "content": content[:2000]},
                {
                    "role": "user",
                    "content": f"Your answer was unusable ({problem}). Reply again with only "
                    "the complete JSON object that matches the schema.",
                },
            ]
        raise SkeditError(
            f"{self._where()} gave no usable answer after {1 + self.config.llm_reasks} tries: "
            f"{problem}",
            hint="try another --llm-model, or --backend rules",
        )

    def write(
        self,
        edits: list[Edit],
        *,
        sentence_form: set[str],
        feedback: list[str],
        statement_form: Collection[str] = (),
    ) -> str:
        payload = {
            "facts": [_fact(e, e.id in sentence_form) for e in edits],
            "sentence_form": sorted(sentence_form & {e.id for e in edits}),
            "feedback": feedback,
            "draft": layout_text(
                edits,
                sentence_form=sentence_form,
                statement_form=statement_form,
                layout=self.config.layout,
            ),
        }
        return self.ask("writer", payload, _WriterOut).text.strip()  # type: ignore[attr-defined]

    def questions(self, edits: list[Edit], *, n_rephrases: int) -> dict[str, Questions]:
        if not edits:
            return {}
        payload = {"facts": [_fact(e) for e in edits], "n_rephrases": n_rephrases}
        got = self.ask("questioner", payload, _QuestionerOut)
        wanted = {e.id: e for e in edits}
        out: dict[str, Questions] = {}
        for item in got.items:  # type: ignore[attr-defined]
            edit = wanted.get(item.id)
            if edit is None:
                continue  # an id the LLM made up
            rephrases = [r for r in item.rephrases if edit.subject.lower() in r.lower()]
            port = [p for p in item.portability if p.get("prompt") and p.get("answer")]
            out[item.id] = Questions(rephrases=rephrases[:n_rephrases], portability=port[:2])
        return out

    def review_text(self, edits: list[Edit], text: str) -> list[str]:
        payload = {"facts": [_fact(e) for e in edits], "text": text}
        got = self.ask("critic", payload, _CriticOut)
        ids = {e.id for e in edits}
        return [f"{p.id}: {p.problem}" for p in got.problems if p.id in ids]  # type: ignore[attr-defined]


def make_backend(config: AgentsConfig) -> AgentBackend:
    if config.backend == "openai":
        return OpenAIBackend(config)
    return RulesBackend(config.layout)
