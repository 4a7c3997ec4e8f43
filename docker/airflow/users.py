"""Airflow's users under the FAB auth manager: one per role, each password from the environment.

Run by the one-shot ``airflow-init`` service after ``airflow db migrate`` (which creates FAB's
tables and roles). Idempotent: an existing user gets its role and password from ``.env`` again,
so ``.env`` stays the one place they are set, and no password is ever a command-line argument
(``airflow users create --password`` would put it in the process list).
"""

from __future__ import annotations

import os
import sys

# (username, FAB role, the variable holding the password). Admin: everything, users and roles
# included; Op: run, clear and configure DAGs, connections, variables and pools; Viewer: read.
USERS = (
    ("admin", "Admin", "AIRFLOW_ADMIN_PASSWORD"),
    ("operator", "Op", "AIRFLOW_OP_PASSWORD"),
    ("viewer", "Viewer", "AIRFLOW_VIEWER_PASSWORD"),
)


def main() -> int:
    missing = [variable for _, _, variable in USERS if not os.environ.get(variable)]
    if missing:
        print(f"set {', '.join(missing)} in .env", file=sys.stderr)
        return 1

    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
    from werkzeug.security import check_password_hash

    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        for username, role_name, variable in USERS:
            role = security.find_role(role_name)
            if role is None:
                print(f"FAB has no role {role_name!r}: is FabAuthManager set?", file=sys.stderr)
                return 1
            password = os.environ[variable]
            user = security.find_user(username=username)
            if user is None:
                email = f"{username}@nightjar.invalid"  # FAB wants a unique email
                security.add_user(username, username, "nightjar", email, role, password)
                print(f"Airflow user {username}: created ({role_name})")
                continue
            if [r.name for r in user.roles] != [role_name] or not user.active:
                user.roles, user.active = [role], True
                security.update_user(user)
            # Only on a change: resetting a password also ends the user's sessions.
            if not check_password_hash(user.password, password):
                security.reset_password(user.id, password)
            print(f"Airflow user {username}: up to date ({role_name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
