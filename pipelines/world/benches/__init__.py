"""skedit.pipelines.world.benches: benchmarks on the synthetic world, each ``skedit bench NAME``
(``perf``: plain ``skedit bench``), registered through the world plugin."""
