"""skedit.pipelines.world: the synthetic world; nothing outside it imports it (commands wire it in)."""
