"""Circuit breakers: one per engine, agent or llm provider, on pybreaker's state machine and storage."""
