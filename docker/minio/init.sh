#!/bin/sh
# One-shot (minio-init, the only user of MinIO's root credentials besides MinIO itself): the
# `nightjar` bucket, then one user per service with only the prefixes it needs
# (policies/<user>.json). Idempotent: a second run re-applies each policy and resets each secret
# from .env. Every secret reaches mc on stdin, never as an argument (the process list shows those).
set -eu
POLICIES=${POLICIES:-/etc/nightjar/minio/policies}
ENDPOINT=${MINIO_ENDPOINT:-http://minio:9000}

printf '%s\n' "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD in .env}" \
  | mc alias set local "$ENDPOINT" "${MINIO_ROOT_USER:?set MINIO_ROOT_USER in .env}" >/dev/null
mc mb --ignore-existing local/nightjar

user() {  # user NAME SECRET: NAME gets the policy nightjar-NAME from policies/NAME.json
  mc admin policy create local "nightjar-$1" "$POLICIES/$1.json" >/dev/null
  printf '%s\n' "$2" | mc admin user add local "$1" >/dev/null
  mc admin policy attach local "nightjar-$1" --user "$1" >/dev/null
  echo "MinIO user $1: policy nightjar-$1"
}
# Airflow's tasks: write the landing zone, the lakehouse, and MLflow's artifacts (a run's
# artifacts go straight to s3://nightjar/mlflow/<experiment>/, not through the server).
user airflow "${MINIO_AIRFLOW_SECRET_KEY:?set MINIO_AIRFLOW_SECRET_KEY in .env}"
# Spark (Connect server and executors): read the landing zone, write the lakehouse.
user spark "${MINIO_SPARK_SECRET_KEY:?set MINIO_SPARK_SECRET_KEY in .env}"
# The MLflow server: its artifact store only.
user mlflow "${MINIO_MLFLOW_SECRET_KEY:?set MINIO_MLFLOW_SECRET_KEY in .env}"
# Feast's registration (`nightjar feast apply` in airflow-init): read the lakehouse only.
user feast "${MINIO_FEAST_SECRET_KEY:?set MINIO_FEAST_SECRET_KEY in .env}"
