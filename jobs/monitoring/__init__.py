"""Monitoring: Evidently drift and delayed-label performance per day, and the retraining policy."""
