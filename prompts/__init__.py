"""skedit.prompts: the language of the system — data types, rendering, agent templates."""

from skedit.prompts.answers import matches, normalise
from skedit.prompts.render import completion_text, context_prefix, fact_statement, teacher_input
from skedit.prompts.schema import (
    APPROVED,
    Critique,
    DensePrompt,
    Edit,
    Probe,
    TransferExample,
    content_id,
)

__all__ = [
    "APPROVED",
    "Critique",
    "DensePrompt",
    "Edit",
    "Probe",
    "TransferExample",
    "completion_text",
    "content_id",
    "context_prefix",
    "fact_statement",
    "matches",
    "normalise",
    "teacher_input",
]
