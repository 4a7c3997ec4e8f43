"""MLflow's users besides the admin: run by the one-shot ``mlflow-init`` service, signed in as the
admin (MLFLOW_TRACKING_USERNAME / _PASSWORD), through MLflow's own auth client.

``airflow`` is the jobs' user (not an admin): it creates Nightjar's experiments and registered
model, so it manages those and only reads the rest. Idempotent: an existing user gets its password
from ``.env`` again, so ``.env`` stays the one place it is set.
"""

from __future__ import annotations

import os
import sys

USERS = (("airflow", "MLFLOW_AIRFLOW_PASSWORD"),)  # (username, variable holding the password)


def main() -> int:
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    client = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    for username, variable in USERS:
        password = os.environ.get(variable)
        if not password:
            print(f"set {variable} in .env", file=sys.stderr)
            return 1
        try:
            client.get_user(username)
        except MlflowException as missing:
            if missing.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_user(username, password)
            print(f"MLflow user {username}: created")
        else:
            client.update_user_password(username, password)
            print(f"MLflow user {username}: password set from .env")
    return 0


if __name__ == "__main__":
    sys.exit(main())
