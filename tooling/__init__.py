"""Running the platform locally: the Airflow environment and the long-lived services."""
