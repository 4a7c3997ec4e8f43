"""Feature store: the Feast repository in ``feature_repo/`` over the gold Delta tables."""
