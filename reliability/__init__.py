"""What keeps long runs safe: atomic checkpoints, clear errors, resumable W&B runs."""
