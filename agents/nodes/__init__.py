"""skedit.agents.nodes: one module per LangGraph node."""
