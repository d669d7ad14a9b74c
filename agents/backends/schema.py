"""What the LLM must answer, per template: pydantic models, and the strict JSON schemas derived
from them (``Model.model_json_schema()``; one source of truth for parsing and for the request)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class WriterOut(BaseModel):
    text: str


class Pair(BaseModel):
    prompt: str
    answer: str


class QuestionItem(BaseModel):
    id: str
    rephrases: list[str] = Field(default_factory=list)
    portability: list[Pair] = Field(default_factory=list)


class QuestionerOut(BaseModel):
    items: list[QuestionItem]


class CriticProblem(BaseModel):
    id: str
    problem: str


class CriticOut(BaseModel):
    problems: list[CriticProblem] = Field(default_factory=list)


OUTPUTS: dict[str, type[BaseModel]] = {
    "writer": WriterOut,
    "questioner": QuestionerOut,
    "critic": CriticOut,
}


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as strict structured output demands: ``$ref``s inlined, objects
    closed and fully required, no titles or defaults."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return fix(dict(defs[node["$ref"].rsplit("/", 1)[-1]]))
        out = {k: fix(v) for k, v in node.items() if k not in ("title", "default")}
        if out.get("type") == "object":
            out["additionalProperties"] = False
            out["required"] = list(out.get("properties", {}))
        return out

    return fix(schema)


SCHEMAS: dict[str, dict[str, Any]] = {name: strict_schema(m) for name, m in OUTPUTS.items()}
