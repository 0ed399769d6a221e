"""The Prefect server a command talks to: the local server, its process and state, and runs whose process died."""
