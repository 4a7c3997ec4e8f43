"""Training and the model registry: XGBoost on Feast training sets, tracked in MLflow,
promoted champion/challenger with registry aliases."""
