"""skedit.agents: the LangGraph workflow that writes, checks and reviews dense fact prompts."""
