"""skedit.sft: everything that touches weights — models, teacher, transfer sets, training."""
