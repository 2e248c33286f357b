"""Scheduled retraining: the schedule file, dataset content hashes, the beat tick, the retrain job and
its promotion gate. See docs/retraining.md for the whole story."""
