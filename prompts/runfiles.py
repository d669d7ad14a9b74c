"""The names of the files in a run directory: the one place every layer reads them from.

``agents`` and ``sft`` write into a run directory but may not import ``pipelines`` (the layer
that owns ``RunDir``), so the names live here, in the data layer they all share.
"""

from __future__ import annotations

CONFIG = "config.yaml"  # the resolved settings of every stage
EDITS = "edits.jsonl"  # the edits as the agents read them
PROBES = "probes.jsonl"  # every probe: the edits' own and the generated ones
PROMPTS = "prompts/prompts.jsonl"  # dense prompts with their critiques and review status
TRANSFER = "transfer.jsonl"  # the teacher's answers: what the student trains on
MODEL = "model"  # the trained student (a Hugging Face folder)
METRICS = "metrics.json"  # the evaluation
STAGES = "stages.json"  # which stages are done, with their input hashes and costs
OPTIONS = "run.json"  # how the run was started (e.g. auto-approval)
AGENTS_LOG = "agents.log"  # one line per agent step
LLM_CALLS = "llm_calls.jsonl"  # one JSON line per LLM request (model, server, seconds)
LOCK = ".skedit.lock"
