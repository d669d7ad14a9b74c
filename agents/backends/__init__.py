"""Who writes prompts and probes: ``rules`` (deterministic, offline) or ``openai`` (an LLM).

Both sit behind :class:`skedit.agents.backends.base.AgentBackend`; nodes never know which one
runs. Fact text is untrusted: the ``openai`` backend sends it as JSON inside ``<facts>`` tags,
and no backend output ever decides routing — the critic's measurements and the reviewer do.
Modules: ``layout`` (the text a rules writer produces), ``base`` (the protocol, the factory),
``rules``, ``schema`` (the structured-output models), ``openai``.
"""
