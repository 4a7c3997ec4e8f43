"""Stopping a service: SIGTERM to it, then to what it leaves; repeated for a process that missed
it; SIGKILL as a last resort."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from jobs.common.settings import Settings
from tests.tooling.test_process_ownership import gone
from tooling import services

# Like an Airflow component whose SystemExit Python ignored: the first SIGTERM is lost.
MISSES_THE_FIRST_SIGTERM = textwrap.dedent(
    """
    import signal, sys, time
    seen = []
    def handler(signum, frame):
        seen.append(signum)
        if len(seen) > 1:
            sys.exit(0)
    signal.signal(signal.SIGTERM, handler)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def test_a_service_that_misses_sigterm_gets_it_again_before_the_kill(tmp_path, monkeypatch):
    settings = Settings(state_dir=tmp_path)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", MISSES_THE_FIRST_SIGTERM],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().strip() == "ready"
    services.record_pid(settings, "fake", process.pid)
    monkeypatch.setitem(services._children, "fake", process)  # started here: reaped by stop
    began = time.monotonic()
    assert services.stop(settings, "fake", timeout=30)
    took = time.monotonic() - began
    assert process.wait(timeout=5) == 0  # its own exit on the second SIGTERM, not SIGKILL
    assert services.TERM_REPEAT_S <= took < 30
    assert services.pid_of(settings, "fake") is None


# Like the triggerer: on SIGTERM it asks its child to stop and waits for it. The child, signalled
# directly, would die without reporting (exit 3 here).
STOPS_ITS_CHILD = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", '''
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    '''], stdout=subprocess.PIPE, text=True)
    child.stdout.readline()
    leave_child = sys.argv[1] == "leave"
    def handler(signum, frame):
        if not leave_child:
            time.sleep(0.2)  # its own clean-up first
            child.send_signal(signal.SIGUSR1)
            sys.exit(child.wait())
        sys.exit(0)
    signal.signal(signal.SIGTERM, handler)
    print(child.pid, flush=True)
    while True:
        time.sleep(0.05)
    """
)


def _start_fake(settings, monkeypatch, *args) -> tuple[subprocess.Popen, int]:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", STOPS_ITS_CHILD, *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child_pid = int(process.stdout.readline())
    services.record_pid(settings, "fake", process.pid)
    monkeypatch.setitem(services._children, "fake", process)
    return process, child_pid


def test_the_service_is_signalled_before_its_children(tmp_path, monkeypatch):
    settings = Settings(state_dir=tmp_path)
    process, _ = _start_fake(settings, monkeypatch, "stop")
    assert services.stop(settings, "fake", timeout=30)
    # 0: the child exited on its parent's request; 3 had the group's SIGTERM reached it first
    assert process.wait(timeout=5) == 0


def test_what_a_service_leaves_of_its_group_is_stopped_too(tmp_path, monkeypatch):
    settings = Settings(state_dir=tmp_path)
    process, child_pid = _start_fake(settings, monkeypatch, "leave")
    assert services.stop(settings, "fake", timeout=30)
    assert process.wait(timeout=5) == 0
    assert gone([child_pid])  # the orphaned child


def test_a_cluster_setting_starts_a_master_and_workers_that_the_connect_server_drives():
    """NIGHTJAR_SPARK_WORKERS=2 is all it takes: the same services, plus a standalone master
    and two workers, and the Connect server (and so every task) on the master's URL."""
    cluster = Settings(spark_workers=2, spark_master_port=17999, spark_worker_memory="1g")
    spark = services.spark_services(cluster)
    assert [s.name for s in spark] == [
        "spark-master",
        "spark-worker-1",
        "spark-worker-2",
        "spark-connect",
    ]
    master, worker, _, connect = spark
    assert master.port == 17999 and master.command[-1] == str(services.master_ui_port(cluster))
    assert worker.command[-1] == "spark://127.0.0.1:17999"
    assert worker.command[worker.command.index("--memory") + 1] == "1g"
    assert connect.command[connect.command.index("--master") + 1] == "spark://127.0.0.1:17999"
    properties = Path(connect.command[connect.command.index("--properties-file") + 1])
    assert "spark.executor.memory 1g" in properties.read_text().splitlines()
    # without workers: the Connect server alone, on spark_master
    (local,) = services.spark_services(Settings(spark_workers=0))
    assert local.command[local.command.index("--master") + 1] == Settings().spark_master


def test_generated_secrets_and_what_airflow_writes_are_for_their_owner_only(tmp_path):
    """The API and JWT secrets are created 0600; Airflow's components (the admin password file
    they generate, their logs, their tasks' files) run with umask 0o077."""
    from tooling.airflow_env import airflow_env

    settings = Settings(state_dir=tmp_path)
    airflow_env(settings)
    for name in (".api_secret", ".jwt_secret"):
        assert (settings.airflow_home / name).stat().st_mode & 0o777 == 0o600, name
    assert {services.airflow_service(settings, c).umask for c in services.AIRFLOW_COMPONENTS} == {
        0o077
    }
    written = tmp_path / "written-by-a-service"
    child = services.Service(
        "umask-probe",
        [sys.executable, "-c", f"open({str(written)!r}, 'w').write('x')"],
        dict(os.environ),
        umask=0o077,
    )
    services.start(settings, child)
    deadline = time.monotonic() + 30
    while not written.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert written.stat().st_mode & 0o077 == 0


def test_no_secret_is_in_a_local_services_arguments(settings, tmp_path):
    """Every process's arguments are public (`ps`): the S3 keys reach Spark in a 0600
    properties file and the S3 server in its environment."""
    from tooling import servers

    secret = "s3-secret-do-not-show"
    local = settings.model_copy(
        update={"state_dir": tmp_path, "s3_access_key": "k", "s3_secret_key": secret}
    )
    spark = services.spark_connect_service(local)
    assert not any(secret in argument for argument in spark.command)
    properties = Path(spark.command[spark.command.index("--properties-file") + 1])
    assert properties.stat().st_mode & 0o777 == 0o600
    assert f"spark.hadoop.fs.s3a.secret.key {secret}" in properties.read_text().splitlines()
    if servers.VERSITYGW.exists():
        s3 = servers.s3_service(local)
        assert not any(secret in argument for argument in s3.command)
        assert s3.env["ROOT_SECRET_ACCESS_KEY"] == secret


# Run with Airflow's own engine (airflow.settings), configured by the components' environment:
# a session ends with a result left unread, then another process commits a row.
ABANDONED_READ = textwrap.dedent(
    """
    import sqlalchemy as sa
    from airflow import settings

    url = str(settings.engine.url)
    with settings.engine.begin() as db:
        db.execute(sa.text("create table t (x int)"))
        db.execute(sa.text("insert into t values (1), (2), (3)"))
    session = settings.engine.connect()
    unread = session.execute(sa.text("select x from t"))
    unread.fetchone()  # two rows left unread, the result still referenced
    session.close()
    with sa.create_engine(url, poolclass=sa.pool.NullPool).begin() as other:
        other.execute(sa.text("insert into t values (4)"))
    with settings.engine.begin() as db:
        seen = db.execute(sa.text("select count(*) from t")).scalar()
        db.execute(sa.text("update t set x = x + 1"))
    print("RESULT", seen, "written")
    """
)


def test_airflow_on_sqlite_reads_what_was_committed_and_can_write_after_an_unread_result(
    tmp_path,
):
    """With a pooled connection, the next session would read the snapshot the unread result
    holds (3 rows: a task the backfill just queued is "not found") and fail to write ("database
    is locked"): the components run on SQLite without a connection pool."""
    from tooling.airflow_env import airflow_env

    env = airflow_env(Settings(state_dir=tmp_path, airflow_database="sqlite"))
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{tmp_path / 'scratch.db'}"
    out = subprocess.run(
        [sys.executable, "-c", ABANDONED_READ], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "RESULT 4 written"


def test_airflows_metadata_db_is_a_database_per_state_folder_in_the_private_postgres(tmp_path):
    """'auto' is PostgreSQL where it is installed (the tests install it); two state folders
    sharing one server (the tests' platforms) get a database each; 'sqlite' is a file in
    Airflow's home, without a connection pool; Airflow's own variable wins over both."""
    from tooling import servers
    from tooling.airflow_env import airflow_env

    assert servers.installed("postgres")
    one, two = Settings(state_dir=tmp_path / "one"), Settings(state_dir=tmp_path / "two")
    url = airflow_env(one, base={})["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert url.startswith(f"postgresql+psycopg2://postgres@127.0.0.1:{one.postgres_port}/airflow_")
    assert url != airflow_env(two, base={})["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert (
        url
        == airflow_env(Settings(state_dir=tmp_path / "one"), base={})[
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
        ]
    )
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED" not in airflow_env(one, base={})
    lite = airflow_env(one.model_copy(update={"airflow_database": "sqlite"}), base={})
    assert lite["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{one.airflow_home}/airflow.db"
    assert lite["AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED"] == "False"
    theirs = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow@db/airflow"}
    assert (
        airflow_env(one, base=theirs)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == theirs["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )


def test_a_port_held_by_another_server_fails_migration_in_one_line_naming_the_fix(tmp_path):
    """Something that is not our PostgreSQL listens on postgres_port: the metadata DB cannot
    be reached, said in one line with the settings that fix it, and nothing is started."""
    import socket
    import threading

    import pytest

    from tooling import servers

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()

    def hang_up():
        while True:
            conn, _ = held.accept()
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    port = held.getsockname()[1]
    settings = Settings(state_dir=tmp_path, postgres_port=port)
    with pytest.raises(servers.ServerUnavailable) as failed:
        services.migrate_airflow_db(settings)
    message = str(failed.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message
    assert "NIGHTJAR_POSTGRES_PORT" in message and "NIGHTJAR_AIRFLOW_DATABASE=sqlite" in message
    assert services.pid_of(settings, "postgres") is None
    held.close()
