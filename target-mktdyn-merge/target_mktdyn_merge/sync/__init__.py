"""One run's work: plan from what is staged, write back, confirm, record outcomes."""
