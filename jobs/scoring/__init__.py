"""Nightly batch scoring: tomorrow's flights, scored with the champion (and a challenger in
shadow), written to the predictions Delta table with lineage back to the training inputs."""
