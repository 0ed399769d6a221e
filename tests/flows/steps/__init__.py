"""Tests of the pipeline step commands (flows.steps)."""
