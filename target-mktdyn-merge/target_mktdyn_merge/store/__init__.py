"""The durable store: the only layer that speaks SQL."""
