"""skedit.pipelines.bench: benchmarks on any model (``skedit bench real``); the benchmarks on the
synthetic world are the world plugin's (``world/benches/``)."""
