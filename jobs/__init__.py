"""Nightjar job code: plain, importable Python with no Airflow import.

The stages are declared once in ``jobs.stages`` and run by ``jobs.pipeline.run_stage``, which the
Airflow tasks, the CLI (`python -m jobs ...`) and the `make` targets all call.
"""
