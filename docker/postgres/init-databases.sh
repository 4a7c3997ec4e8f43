#!/bin/bash
# One database and one user per service (Airflow's metadata DB, MLflow's backend store, Feast's
# registry); passwords come from the environment (.env), never from this file.
set -euo pipefail
for service in airflow mlflow feast; do
  var="${service^^}_DB_PASSWORD"
  password="${!var:?set ${var} in .env}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE USER ${service} WITH PASSWORD '${password}';
CREATE DATABASE ${service} OWNER ${service};
SQL
done
