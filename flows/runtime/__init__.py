"""Running one step or one agent on Prefect: the step and llm tasks, agent runs with fallback, outcomes, events, breaker checks, cache keys."""
