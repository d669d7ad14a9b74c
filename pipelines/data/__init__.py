"""skedit.pipelines.data: reading knowledge-editing datasets (every format) as edits."""
