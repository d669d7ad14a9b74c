"""The ``openai`` backend: any OpenAI-compatible endpoint, with JSON-schema output.

Fact text is untrusted: it is sent as JSON inside ``<facts>`` tags.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Collection
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from skedit.agents.backends.base import Questions
from skedit.agents.backends.layout import layout_text, statement
from skedit.agents.backends.rules import RulesBackend
from skedit.agents.backends.schema import SCHEMAS, CriticOut, QuestionerOut, WriterOut
from skedit.prompts.answers import normalise
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit

if TYPE_CHECKING:
    from skedit.agents.config import AgentsConfig


_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")
QUESTION_BATCH = 4  # facts per questioner request: a small model's answer stays short
# structured-output forms, best first: OpenAI/vLLM/llama.cpp; llama.cpp's older form; none
FORMATS = ("json_schema", "json_object", "prompt")
SCHEMA_NOTE = (
    "\n\n## Answer format\n\nReply with only one JSON object that matches this JSON schema:\n"
    "{schema}\n"
)


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


class UnusableAnswer(SkeditError):
    """The LLM answered, but never with JSON that fits the schema (after the re-asks)."""


def refuses_format(status: int, message: str) -> bool:
    """A server saying it does not take this form of structured output (not any bad request:
    a too-long prompt is HTTP 400 too)."""
    low = message.lower()
    return status in (400, 422, 500) and any(
        w in low for w in ("response_format", "json_schema", "json_object", "schema")
    )


def too_long(message: str, code: str | None) -> bool:
    """The server says the request does not fit its context (llama.cpp: HTTP 400 "Requested
    tokens (5000) exceed context window of 4096", code ``context_length_exceeded``)."""
    low = message.lower()
    return code == "context_length_exceeded" or (
        "context" in low and any(w in low for w in ("length", "window", "exceed"))
    )


def _names(text: str, answer: str) -> bool:
    """``text`` contains ``answer`` as a whole word or phrase ("C++", "U.S." too)."""
    return re.search(rf"(?<!\w){re.escape(answer.lower())}(?!\w)", text.lower()) is not None


def well_formed_rephrase(text: str, edit: Edit) -> bool:
    """A usable way to ask ``edit``: names its subject (case aside), does not give away either
    answer, is not the prompt itself, and is one short line."""
    t = text.strip()
    answers = [a for a in (edit.target_new, edit.target_old) if a]
    return (
        0 < len(t.split()) <= 30
        and "\n" not in t
        and edit.subject.lower() in t.lower()
        and normalise(t) != normalise(edit.prompt)
        and not any(_names(t, a) for a in answers)
    )


def well_formed_implication(prompt: str, answer: str, edit: Edit) -> bool:
    """A usable multi-hop question: names the subject, has a short answer it does not contain,
    does not state the edit's target (then it is no hop), and is not the edit's own question."""
    p, a = prompt.strip(), answer.strip()
    targets = [t for t in (edit.target_new, edit.target_old) if t]
    return (
        0 < len(p.split()) <= 30
        and 0 < len(a.split()) <= 6
        and "\n" not in p
        and edit.subject.lower() in p.lower()
        and not _names(p, a)
        and not any(_names(p, t) for t in targets)
        and normalise(p) != normalise(edit.prompt)
    )


class OpenAIBackend:
    """Any OpenAI-compatible endpoint through the official client, with JSON-schema output.

    Timeouts and HTTP retries are the client's (one layer); a malformed or truncated answer is
    re-asked here a bounded number of times. Errors name the endpoint and model, never the key.
    """

    name = "openai"
    asks_all = True  # asked about every edit the dataset gives no rephrases for
    replaces_rule_rephrases = True  # its rephrases are used instead of the relation templates'

    def __init__(self, config: AgentsConfig, client: Any | None = None) -> None:
        self.config = config
        self.endpoint = config.base_url or "https://api.openai.com/v1"
        self._key = os.environ.get("OPENAI_API_KEY", "")
        self._client = client
        self._format = 0  # index into FORMATS: the structured-output form this server takes
        self.calls: list[dict[str, Any]] = []
        self.fallbacks = 0  # answers that never fit the schema: the rules' text stood in
        self.log_path: Path | None = None  # set by the workflow: DIR/llm_calls.jsonl
        self._log_lock = threading.Lock()
        self.question_counts: dict[str, int] = dict.fromkeys(
            (
                "edits_asked",
                "edits_answered",
                "rephrases_written",
                "rephrases_kept",
                "implications_written",
                "implications_kept",
            ),
            0,
        )

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
        """One structured request: template as system message, data in ``<facts>`` tags.

        Structured output is asked as a JSON schema (OpenAI, vLLM); a server that refuses that
        form (HTTP 400/422, or llama-cpp-python's 500 naming ``response_format``) is asked again with ``json_object`` plus the schema
        (llama.cpp's older form), then with the schema in the instructions only. The form that
        worked is kept for the rest of the run; every answer is validated either way.
        """
        import openai

        schema = SCHEMAS[template]
        problem = ""
        history: list[dict[str, str]] = []
        tries = 1 + max(0, self.config.llm_reasks)
        attempt = 0
        while attempt < tries:
            level = self._format
            fmt = FORMATS[level]
            system = load_template(template)
            if fmt != "json_schema":
                system += SCHEMA_NOTE.format(schema=json.dumps(schema, separators=(",", ":")))
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": facts_block(payload)},
                *history,
            ]
            kwargs: dict[str, Any] = {}
            if fmt == "json_schema":
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": template, "schema": schema, "strict": True},
                }
            elif fmt == "json_object":
                kwargs["response_format"] = {"type": "json_object", "schema": schema}
            t0 = time.perf_counter()
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model=self.config.llm_model,
                    messages=messages,
                    temperature=0,
                    max_tokens=self.config.llm_max_tokens,
                    **kwargs,
                )
                resp = raw.parse()
            except openai.APITimeoutError as exc:
                self._record(template, t0, fmt, "timeout")
                raise SkeditError(
                    f"{self._where()} did not answer within {self.config.llm_timeout:g} s "
                    f"({self.config.llm_max_retries} retries)",
                    hint="raise llm_timeout, check the server, or use --backend rules",
                ) from exc
            except openai.APIStatusError as exc:
                self._record(template, t0, fmt, f"http {exc.status_code}")
                message = str(exc.message)
                if too_long(message, getattr(exc, "code", None)):
                    raise SkeditError(
                        f"{self._where()}: the request is longer than the server's context "
                        f"({self._redact(message)[:200]})",
                        hint="start the server with a longer context (skedit model serve "
                        "--n-ctx), or lower shard_tokens / max_facts",
                    ) from exc
                if refuses_format(exc.status_code, message) and level + 1 < len(FORMATS):
                    with self._log_lock:  # shards ask at once: move on from *this* form only
                        self._format = max(self._format, level + 1)
                    continue
                raise SkeditError(
                    f"{self._where()} answered HTTP {exc.status_code}: "
                    f"{self._redact(str(exc.message))[:300]}",
                    hint="check --base-url, --llm-model and OPENAI_API_KEY",
                ) from exc
            except openai.APIConnectionError as exc:
                self._record(template, t0, fmt, "unreachable")
                raise SkeditError(
                    f"cannot reach {self._where()}: {self._redact(str(exc))[:200]}",
                    hint="check --base-url and that the server is running",
                ) from exc
            except (openai.APIError, ValueError) as exc:  # an answer that is not a completion
                self._record(template, t0, fmt, "garbage")
                raise SkeditError(
                    f"{self._where()} answered something that is not a chat completion: "
                    f"{self._redact(str(exc))[:200]}",
                    hint="check that --base-url is an OpenAI-compatible /v1 endpoint",
                ) from exc
            attempt += 1
            choices = getattr(resp, "choices", None)
            choice = choices[0] if isinstance(choices, list) and choices else None
            content = getattr(getattr(choice, "message", None), "content", None)
            if not isinstance(content, str):
                content = ""
            if choice is None:
                problem = "the answer had no choices"
            elif not content:
                problem = "the answer had no message text"
            elif choice.finish_reason == "length":
                problem = "the answer was cut off (finish_reason=length)"
            else:
                try:
                    got = out.model_validate(json.loads(_FENCE.sub("", content)))
                except (json.JSONDecodeError, ValidationError) as exc:
                    problem = f"not valid JSON for the schema: {str(exc).splitlines()[0][:200]}"
                else:
                    self._record(template, t0, fmt, "ok", resp, raw.headers.get("server"))
                    return got
            self._record(template, t0, fmt, "unusable", resp, raw.headers.get("server"), problem)
            history = [
                {"role": "assistant", "content": content[:2000]},
                {
                    "role": "user",
                    "content": f"Your answer was unusable ({problem}). Reply again with only "
                    "the complete JSON object that matches the schema.",
                },
            ]
        raise UnusableAnswer(
            f"{self._where()} gave no usable answer after {tries} tries: {problem}",
            hint="try another --llm-model, or --backend rules",
        )

    def _record(
        self,
        template: str,
        t0: float,
        fmt: str,
        outcome: str,
        resp: Any = None,
        server: str | None = None,
        problem: str = "",
    ) -> None:
        """One line per LLM call in ``llm_calls.jsonl`` (model, server, latency, outcome)."""
        usage = getattr(resp, "usage", None)
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "template": template,
            "endpoint": self.endpoint,
            "model": self.config.llm_model,
            "served_model": getattr(resp, "model", None),
            "server": server,
            "format": fmt,
            "seconds": round(time.perf_counter() - t0, 3),
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
            "outcome": outcome,
        }
        if problem:
            row["problem"] = problem
        self.calls.append(row)
        self._append({"event": "call", **row})

    def _append(self, row: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        with self._log_lock, open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")

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
        try:
            text = self.ask("writer", payload, WriterOut).text.strip()  # type: ignore[attr-defined]
        except UnusableAnswer as exc:
            # the LLM cannot write this one: the offline layout stands in, and the critic
            # measures it like any other prompt (the log says it happened)
            self._append({"event": "fallback", "template": "writer", "problem": str(exc)})
            with self._log_lock:
                self.fallbacks += 1
            return str(payload["draft"])
        return text or str(payload["draft"])

    def questions(self, edits: list[Edit], *, n_rephrases: int) -> dict[str, Questions]:
        """Rephrases and multi-hop questions the LLM writes, ``QUESTION_BATCH`` facts per request,
        only the well-formed ones kept (:func:`well_formed_rephrase`,
        :func:`well_formed_implication`); the counts go to the call log (``event: questions``)
        and to :attr:`question_counts`. A request that never gets a usable answer leaves its
        edits to the rules (``event: fallback``)."""
        out: dict[str, Questions] = {}
        for i in range(0, len(edits), QUESTION_BATCH):
            out |= self._questions(edits[i : i + QUESTION_BATCH], n_rephrases)
        return out

    def _questions(self, edits: list[Edit], n_rephrases: int) -> dict[str, Questions]:
        payload = {"facts": [_fact(e) for e in edits], "n_rephrases": n_rephrases}
        counts = self.question_counts
        counts["edits_asked"] += len(edits)
        try:
            got = self.ask("questioner", payload, QuestionerOut)
        except UnusableAnswer as exc:  # these edits keep what the rules wrote
            self._append({"event": "fallback", "template": "questioner", "problem": str(exc)})
            with self._log_lock:
                self.fallbacks += 1
            self._append({"event": "questions", **counts})
            return {}
        wanted = {e.id: e for e in edits}
        out: dict[str, Questions] = {}
        rejected: list[dict[str, str]] = []
        for item in got.items:  # type: ignore[attr-defined]
            edit = wanted.get(item.id)
            if edit is None:
                continue  # an id the LLM made up
            counts["rephrases_written"] += len(item.rephrases)
            counts["implications_written"] += len(item.portability)
            rephrases: list[str] = []
            for r in item.rephrases:
                if well_formed_rephrase(r, edit) and r.strip() not in rephrases:
                    rephrases.append(r.strip())
                elif len(rejected) < 8:
                    rejected.append({"id": edit.id, "rephrase": r[:200]})
            port = []
            for p in item.portability:
                if well_formed_implication(p.prompt, p.answer, edit):
                    port.append({"prompt": p.prompt.strip(), "answer": p.answer.strip()})
                elif len(rejected) < 8:
                    rejected.append(
                        {"id": edit.id, "implication": p.prompt[:200], "answer": p.answer[:50]}
                    )
            rephrases, port = rephrases[:n_rephrases], port[:2]
            counts["rephrases_kept"] += len(rephrases)
            counts["implications_kept"] += len(port)
            out[item.id] = Questions(rephrases=rephrases, portability=port)
        counts["edits_answered"] += len(out)
        made_up = [item.id for item in got.items if item.id not in wanted]  # type: ignore[attr-defined]
        # cumulative counts, and what this request's answer had that was not kept (to read)
        self._append({"event": "questions", **counts, "rejected": rejected, "unknown_ids": made_up})
        return out

    def review_text(self, edits: list[Edit], text: str) -> list[str]:
        payload = {"facts": [_fact(e) for e in edits], "text": text}
        try:
            got = self.ask("critic", payload, CriticOut)
        except UnusableAnswer as exc:  # its notes are advice; the teacher's measures decide
            self._append({"event": "fallback", "template": "critic", "problem": str(exc)})
            with self._log_lock:
                self.fallbacks += 1
            return []
        ids = {e.id for e in edits}
        return [f"{p.id}: {p.problem}" for p in got.problems if p.id in ids]  # type: ignore[attr-defined]


class MixedBackend(OpenAIBackend):
    """Rules write what rules do well, the LLM what needs language.

    The prompt text (fact statements, relation tables) comes from the rules writer; the LLM
    writes paraphrases for edits whose relation has no template and questions about what each
    edit implies. The critic measures every prompt with the teacher, whatever wrote it.
    """

    name = "mixed"
    replaces_rule_rephrases = False

    def __init__(self, config: AgentsConfig, client: Any | None = None) -> None:
        super().__init__(config, client)
        self.layout = config.layout  # what the rules writer reads

    write = RulesBackend.write
    review_text = RulesBackend.review_text
