"""skedit.pipelines.world.commands: the world's commands (``skedit world``, ``skedit demo``) and
its benchmarks' options, registered through the world plugin."""
