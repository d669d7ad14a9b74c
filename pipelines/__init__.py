"""skedit.pipelines: entry points — CLI, run directories, datasets, world, evaluation."""
