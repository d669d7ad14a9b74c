"""The agent graph, returned uncompiled: tests compile it in memory, the workflow with SQLite.

```
START -> analyst -> questioner -(Send per shard)-> shard [writer <-> critic] -> review
review -> recheck -> review      (an edited prompt is judged again)
review -> review                 (prompts still undecided: ask again)
review -> finish -> END
```
"""

from __future__ import annotations

import warnings

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from skedit.agents.context import AgentsContext
from skedit.agents.nodes.analyst import analyst
from skedit.agents.nodes.critic import critic
from skedit.agents.nodes.questioner import questioner
from skedit.agents.nodes.review import finish, recheck, review
from skedit.agents.nodes.writer import writer
from skedit.agents.routing import fan_out, route_after_critic, route_after_review
from skedit.agents.state import BatchState, Json, ShardState
from skedit.prompts.schema import Critique, DensePrompt


def build_shard_graph() -> StateGraph:
    """One shard's bounded writer/critic loop."""
    g = StateGraph(ShardState, context_schema=AgentsContext)
    g.add_node("writer", writer)
    g.add_node("critic", critic)
    g.add_edge(START, "writer")
    g.add_edge("writer", "critic")
    g.add_conditional_edges("critic", route_after_critic, {"writer": "writer", END: END})
    return g


def shard_prompts(state: ShardState, ctx: AgentsContext) -> dict[str, Json]:
    """The shard's final groups as dense prompts (``passed`` or ``failed``, never dropped)."""
    out: dict[str, Json] = {}
    for g in state["groups"]:
        tokens = ctx.context_tokens(g["text"])  # what the teacher reads, as budgeted
        p = DensePrompt(
            edit_ids=g["edit_ids"],
            text=g["text"],
            tokens=tokens,
            status="passed" if g.get("status") == "passed" else "failed",
            critiques=[Critique.model_validate(c) for c in g.get("critiques", [])],
        )
        out[p.id] = p.model_dump(mode="json")
    return out


def build_graph() -> StateGraph:
    """The batch graph (uncompiled). Heavy objects come in as ``context=AgentsContext(...)``."""
    # the loop runs inside one task: a shard is saved when it is finished, never half-way
    shard_graph = build_shard_graph().compile(checkpointer=False)

    def shard(state: ShardState, runtime: Runtime[AgentsContext]) -> BatchState:
        with warnings.catch_warnings():
            # the parent's durability is inherited; "exit" sidesteps a LangGraph 1.2 bug with
            # checkpointer=False subgraphs under "sync", and warns that it has no effect
            warnings.simplefilter("ignore", UserWarning)
            final = shard_graph.invoke(state, context=runtime.context, durability="exit")
        prompts = shard_prompts(final, runtime.context)
        passed = sum(p["status"] == "passed" for p in prompts.values())
        get_stream_writer()(
            {
                "event": "shard",
                "shard": state["shard_id"],
                "rounds": final.get("round", 0),
                "prompts": len(prompts),
                "passed": passed,
            }
        )
        log = {"rounds": final.get("round", 0), "prompt_ids": sorted(prompts)}
        return {"prompts": prompts, "shard_log": {state["shard_id"]: log}}

    g = StateGraph(BatchState, context_schema=AgentsContext)
    g.add_node("analyst", analyst)
    g.add_node("questioner", questioner)
    g.add_node("shard", shard)
    g.add_node("review", review)
    g.add_node("recheck", recheck)
    g.add_node("finish", finish)
    g.add_edge(START, "analyst")
    g.add_edge("analyst", "questioner")
    g.add_conditional_edges("questioner", fan_out, ["shard"])
    g.add_edge("shard", "review")
    g.add_conditional_edges(
        "review",
        route_after_review,
        {"recheck": "recheck", "review": "review", "finish": "finish"},
    )
    g.add_edge("recheck", "review")
    g.add_edge("finish", END)
    return g
