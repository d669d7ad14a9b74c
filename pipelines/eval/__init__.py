"""skedit.pipelines.eval: the evaluation harness, metrics, sequential, retention, report."""
