"""skedit.pipelines.editors: weight editors (ROME, MEMIT, AlphaEdit, FT/LoRA) and their tools."""
