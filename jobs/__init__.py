"""Nightjar job code: plain, importable Python with no Airflow import.

Each stage is a function of (Spark session, logical date, settings) with a small CLI
(`python -m jobs ...`), so Airflow tasks, `make` targets and `spark-submit` all run the same code.
"""
