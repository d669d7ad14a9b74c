"""skedit.pipelines.run: the run directory, its config, the stages and their orchestration."""
