"""A pid file is acted on only while it names the process that was started, and stopping a
service stops everything it started, also once the service itself has crashed (SIGKILL)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from jobs.common.settings import Settings
from tests.conftest import PORT_OFFSET, TEST_STATE
from tooling import services


def running(pid: int) -> bool:
    """Whether ``pid`` runs (an exited child that init has yet to reap does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(pids, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)
    return found


@pytest.fixture()
def foreign(tmp_path):
    """A process that is not ours: the pid file below names its pid but another start time,
    as after the kernel gave a dead service's pid to it. It leads a session, as ours do."""
    settings = Settings(state_dir=tmp_path)
    settings.run_dir.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    services.record_pid(settings, "fake", sleeper.pid)
    pidfile = settings.run_dir / "fake.pid"
    record = json.loads(pidfile.read_text())
    pidfile.write_text(json.dumps({**record, "start": record["start"] - 1}))
    yield settings, sleeper, pidfile
    sleeper.kill()
    sleeper.wait()


def test_a_pid_file_naming_another_process_is_stale_and_nothing_is_signalled(foreign, caplog):
    settings, sleeper, pidfile = foreign
    caplog.set_level(logging.WARNING, logger=services.__name__)
    assert not services.stop(settings, "fake", timeout=2)
    assert not pidfile.exists()
    assert f"pid {sleeper.pid} is another process now: stale pid file removed" in caplog.text
    time.sleep(0.2)  # a signal, had one been sent, has landed
    assert sleeper.poll() is None


def test_start_takes_a_stale_pid_file_for_a_stopped_service(foreign):
    settings, sleeper, pidfile = foreign
    fake = services.Service("fake", ["sleep", "300"], dict(os.environ))
    pid = services.start(settings, fake)
    try:
        assert pid != sleeper.pid and services.pid_of(settings, "fake") == pid
        time.sleep(0.2)
        assert sleeper.poll() is None
    finally:
        assert services.down(settings, ("fake",)) == ["fake"]
    assert sleeper.poll() is None and gone([pid])


def test_an_older_versions_bare_pid_is_acted_on_only_for_a_process_older_than_the_file(
    tmp_path, caplog
):
    settings = Settings(state_dir=tmp_path)
    settings.run_dir.mkdir(parents=True)
    pidfile = settings.run_dir / "fake.pid"
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        time.sleep(0.1)
        pidfile.write_text(str(sleeper.pid))
        os.utime(pidfile, (time.time() - 60,) * 2)  # written before the process started
        assert not services.stop(settings, "fake", timeout=2)
        assert "names no process of ours" in caplog.text and not pidfile.exists()
        time.sleep(0.2)
        assert sleeper.poll() is None
        pidfile.write_text(str(sleeper.pid))  # written after: the one it names
        assert services.pid_of(settings, "fake") == sleeper.pid
        assert services.stop(settings, "fake", timeout=5)
        assert sleeper.wait(timeout=5) == -signal.SIGTERM
    finally:
        sleeper.kill()
        sleeper.wait()


# A service that starts children the ways Airflow's scheduler does: in its process group
# (LocalExecutor workers, the log server), in a group of their own (each task) and, from there,
# in a session of their own (a BashOperator's command). It writes their pids, then serves.
FORKS = textwrap.dedent(
    """
    import subprocess, sys, time
    sleep = ["sleep", "300"]
    worker = subprocess.Popen(sleep)
    task = subprocess.Popen([sys.executable, "-c", '''
    import subprocess, sys, time
    command = subprocess.Popen(["sleep", "300"], start_new_session=True)
    print(command.pid, flush=True)
    time.sleep(300)
    '''], process_group=0, stdout=subprocess.PIPE, text=True)
    command = int(task.stdout.readline())
    with open(sys.argv[1] + ".tmp", "w") as out:
        out.write(f"{worker.pid} {task.pid} {command}")
    import os; os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(300)
    """
)


def _crash_forker(settings, tmp_path) -> tuple[services.Service, int, list[int]]:
    written = tmp_path / "children"
    written.unlink(missing_ok=True)
    forker = services.Service(
        "forker", [sys.executable, "-c", FORKS, str(written)], dict(os.environ)
    )
    leader = services.start(settings, forker)
    wait_for(written.exists, 30, "the children's pids")
    children = [int(pid) for pid in written.read_text().split()]
    os.kill(leader, signal.SIGKILL)
    services._children["forker"].wait(timeout=5)
    assert all(running(pid) for pid in children)  # what a crash leaves
    return forker, leader, children


def test_stopping_a_crashed_service_stops_what_it_started(tmp_path):
    settings = Settings(state_dir=tmp_path)
    _, _, children = _crash_forker(settings, tmp_path)
    assert services.pid_of(settings, "forker") is None  # the service is not running...
    assert (settings.run_dir / "forker.pid").exists()  # ...but what it left is tracked
    assert services.down(settings, ("forker",)) == ["forker"]
    assert gone(children)
    assert not (settings.run_dir / "forker.pid").exists()


def test_starting_a_crashed_service_again_first_stops_what_it_left(tmp_path):
    settings = Settings(state_dir=tmp_path)
    forker, leader, children = _crash_forker(settings, tmp_path)
    again = services.start(settings, forker)
    try:
        assert again != leader and gone(children)
    finally:
        services.stop(settings, "forker")
    assert gone([again])


@pytest.mark.airflow
def test_a_crashed_scheduler_leaves_nothing_running(monkeypatch, postgres):
    """The operator's case: the scheduler is killed with SIGKILL; its LocalExecutor workers
    and log server run on until `services up` (start) or `make stop` (down). (Its metadata DB
    is a database of the run's PostgreSQL.)"""
    state = TEST_STATE / "scheduler-crash"
    shutil.rmtree(state, ignore_errors=True)
    monkeypatch.setenv("NIGHTJAR_STATE_DIR", str(state))
    monkeypatch.setenv("AIRFLOW_HOME", str(state / "airflow"))
    # its own log server port (a test platform's scheduler may hold the default); no preloading
    monkeypatch.setenv("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", str(18793 + PORT_OFFSET))
    monkeypatch.setenv("AIRFLOW__CORE__LAZY_LOAD_PLUGINS", "True")
    settings = Settings()
    services.migrate_airflow_db(settings)
    scheduler = services.airflow_service(settings, "scheduler")
    parallelism = int(scheduler.env["AIRFLOW__CORE__PARALLELISM"])

    def crash() -> list[int]:
        """Start the scheduler, wait for its workers and log server, SIGKILL it; their pids."""
        leader = services.start(settings, scheduler)

        def children():
            if services._children["scheduler"].poll() is not None:
                log = (settings.run_dir / "scheduler.log").read_text()[-3000:]
                pytest.fail(f"the scheduler exited:\n{log}")
            found = psutil.Process(leader).children(recursive=True)
            return found if len(found) > parallelism else None

        orphans = [p.pid for p in wait_for(children, 180, "the scheduler's workers")]
        os.kill(leader, signal.SIGKILL)
        services._children["scheduler"].wait(timeout=5)
        time.sleep(1)
        assert all(running(pid) for pid in orphans)
        return orphans

    try:
        first = crash()
        second = crash()  # started again, as by `nightjar services up`: first stops what was left
        assert gone(first), "the crashed scheduler's processes outlived its restart"
        assert services.down(settings, ("scheduler",)) == ["scheduler"]  # `make stop`
        assert gone(second), "the crashed scheduler's processes outlived `make stop`"
    finally:
        services.stop(settings, "scheduler")
        shutil.rmtree(state, ignore_errors=True)
