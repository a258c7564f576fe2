"""Tuning: MetaSchedule search over a model's kernels, its builder and runner, and the JSON database."""
