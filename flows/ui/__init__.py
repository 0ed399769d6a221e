"""What a run shows: artifacts, charts, history, and what commands print."""
