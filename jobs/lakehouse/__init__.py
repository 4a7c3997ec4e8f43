"""The lakehouse stages: landing -> bronze -> silver -> gold."""
