"""The ``openai`` backend: any OpenAI-compatible endpoint, with JSON-schema output.

Fact text is untrusted: it is sent as JSON inside ``<facts>`` tags.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from skedit.agents.backends.base import Questions
from skedit.agents.backends.layout import layout_text, statement
from skedit.agents.backends.schema import SCHEMAS, CriticOut, QuestionerOut, WriterOut
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit

if TYPE_CHECKING:
    from skedit.agents.config import AgentsConfig


_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


def load_template(name: str) -> str:
    """An agent instruction template shipped in ``skedit.prompts`` (``writer``, ``critic``, ...)."""
    return files("skedit.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")


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
        return self.ask("writer", payload, WriterOut).text.strip()  # type: ignore[attr-defined]

    def questions(self, edits: list[Edit], *, n_rephrases: int) -> dict[str, Questions]:
        if not edits:
            return {}
        payload = {"facts": [_fact(e) for e in edits], "n_rephrases": n_rephrases}
        got = self.ask("questioner", payload, QuestionerOut)
        wanted = {e.id: e for e in edits}
        out: dict[str, Questions] = {}
        for item in got.items:  # type: ignore[attr-defined]
            edit = wanted.get(item.id)
            if edit is None:
                continue  # an id the LLM made up
            rephrases = [r for r in item.rephrases if edit.subject.lower() in r.lower()]
            port = [p.model_dump() for p in item.portability if p.prompt and p.answer]
            out[item.id] = Questions(rephrases=rephrases[:n_rephrases], portability=port[:2])
        return out

    def review_text(self, edits: list[Edit], text: str) -> list[str]:
        payload = {"facts": [_fact(e) for e in edits], "text": text}
        got = self.ask("critic", payload, CriticOut)
        ids = {e.id for e in edits}
        return [f"{p.id}: {p.problem}" for p in got.problems if p.id in ids]  # type: ignore[attr-defined]
