"""What every package of the project may share (imports nothing of ours)."""
