"""skedit.pipelines.bench: benchmarks, each reachable as ``skedit bench NAME``."""
