"""WaveSpeedAI: the only package that knows its JSON and words (provider-api.md §9)."""
