"""The Singer target: reads the taps' messages, stages them, starts the merge."""
