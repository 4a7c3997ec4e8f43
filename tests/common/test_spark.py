"""How jobs connect to Spark: the shared Connect session's URL and the interpreted mode."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from jobs.common.settings import Settings
from jobs.common.spark import INTERPRETED, SHARED_SESSION_WINDOW_S, shared_session_url, sql_conf
from tooling import services


def params(url: str) -> dict[str, str]:
    return dict(parse_qsl(url.partition("/;")[2], separator=";"))


def test_clients_in_one_window_join_one_session_and_the_next_window_opens_another():
    start = 1000 * SHARED_SESSION_WINDOW_S
    first = shared_session_url("sc://127.0.0.1:15002", "score", now=start)
    same = shared_session_url(
        "sc://127.0.0.1:15002", "score", now=start + SHARED_SESSION_WINDOW_S - 1
    )
    later = shared_session_url("sc://127.0.0.1:15002", "score", now=start + SHARED_SESSION_WINDOW_S)
    other = shared_session_url("sc://127.0.0.1:15002", "train", now=start)
    assert first == same and first.startswith("sc://127.0.0.1:15002/;session_id=")
    assert len({params(u)["session_id"] for u in (first, later, other)}) == 3
    # a window is shorter than the idle timeout `nightjar services` gives its server
    command = services.spark_connect_service(Settings()).command
    properties = Path(command[command.index("--properties-file") + 1]).read_text().splitlines()
    timeout = next(p for p in properties if "defaultSessionTimeout " in p).split(" ")[1]
    assert timeout.endswith("m") and int(timeout[:-1]) * 60 > SHARED_SESSION_WINDOW_S


def test_the_remotes_own_parameters_are_kept_and_its_session_id_replaced():
    url = shared_session_url("sc://spark:15002/;user_id=airflow;session_id=abc", "score", now=0)
    got = params(url)
    assert url.startswith("sc://spark:15002/;") and got["user_id"] == "airflow"
    assert got["session_id"] != "abc" and len(got) == 2


def test_code_generation_is_off_unless_asked_for():
    assert INTERPRETED.items() <= sql_conf(Settings()).items()
    on = sql_conf(Settings(spark_codegen=True))
    assert not set(INTERPRETED) & set(on)


def test_gold_runs_with_generated_code_and_the_session_gets_its_setting_back(
    spark, settings, monkeypatch
):
    """Stages declared ``codegen`` (gold) run with Spark's generated code on a session that
    runs without it; the others, and the session after them, without."""
    from jobs import pipeline, stages

    def whole_stage(run):
        return {"whole_stage": run.spark.conf.get("spark.sql.codegen.wholeStage")}

    assert [s.name for s in stages.STAGES if s.codegen] == ["gold"]
    for name in ("gold", "silver"):
        monkeypatch.setitem(pipeline.JOBS, name, whole_stage)
    day = dt.date(2013, 1, 1)
    gold = pipeline.run_stage("gold", day, "codegen", settings, spark=spark)
    silver = pipeline.run_stage("silver", day, "codegen", settings, spark=spark)
    assert (gold, silver) == ({"whole_stage": "true"}, {"whole_stage": "false"})
    assert (
        spark.conf.get("spark.sql.codegen.factoryMode")
        == INTERPRETED["spark.sql.codegen.factoryMode"]
    )


@pytest.fixture()
def one_window(monkeypatch):
    """``jobs.common.spark`` with the clock stopped inside one window: every client of a test
    asks for the same shared session id."""
    from jobs.common import spark as spark_module

    fixed = spark_module.shared_session_url
    monkeypatch.setattr(
        spark_module, "shared_session_url", lambda remote, name: fixed(remote, name, now=0.0)
    )
    return spark_module


def test_a_task_leaving_a_shared_session_leaves_it_open_for_the_next(spark, settings, one_window):
    first = one_window.get_spark(settings, shared="open-probe")
    first.range(5).createOrReplaceTempView("left_by_the_first")
    first.stop()  # a task ending: its client closes, the server session stays
    second = one_window.get_spark(settings, shared="open-probe")
    try:
        assert second.session_id == first.session_id
        assert second.table("left_by_the_first").count() == 5
    finally:
        second.client.release_session()
        second.stop()


def test_a_shared_session_the_server_has_closed_gives_way_to_a_private_one(
    spark, settings, one_window, caplog
):
    spark_module = one_window
    first = spark_module.get_spark(settings, shared="closed-probe")
    try:
        assert first.range(3).count() == 3
        first.client.release_session()  # what the server's idle timeout does: the id is closed
    finally:
        first.stop()  # closes this client only
    second = spark_module.get_spark(settings, shared="closed-probe")
    # the process's own session: here the suite's, in a task process a new private one
    assert second is spark and second.session_id != first.session_id
    assert second.range(2).count() == 2
    assert "is closed on the server; using a private one" in caplog.text


CLASSIC_UDF = """
from jobs.common.settings import Settings
from jobs.common.spark import get_spark

spark = get_spark(Settings(spark_remote=None, state_dir={state!r}))

def versions(batches):
    import pyarrow as pa
    import xgboost

    for batch in batches:
        yield pa.RecordBatch.from_pydict({{"xgboost": [xgboost.__version__] * batch.num_rows}})

print("worker xgboost", spark.range(2).mapInArrow(versions, "xgboost string").first()[0])
spark.stop()
"""


def test_a_classic_session_runs_python_udfs_in_this_interpreter(tmp_path):
    """`nightjar stage score` without a Connect server: the workers must get this venv's
    libraries even when `python3` on PATH is another interpreter (here: the system's)."""
    import subprocess
    import sys

    import xgboost

    # a fresh shell's environment: no venv, no Spark settings (a Connect client in this process
    # sets SPARK_CONNECT_MODE_ENABLED, which would make the child a Connect client too)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPARK_", "PYSPARK_")) and k != "VIRTUAL_ENV"
    }
    env["PATH"] = "/usr/bin:/bin"  # python3 here has no pyarrow, no xgboost
    env["NIGHTJAR_SPARK_REMOTE"] = ""
    done = subprocess.run(
        [sys.executable, "-c", CLASSIC_UDF.format(state=str(tmp_path))],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"worker xgboost {xgboost.__version__}" in done.stdout


def test_the_connect_server_jvm_runs_with_nightjars_flags_and_the_users_come_last(spark, settings):
    from pathlib import Path

    from jobs.common.spark import JVM_OPTIONS, static_conf

    # the live server this suite started: its java command line has every flag
    pid = services.pid_of(settings, "spark-connect")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert argv[0].endswith("java") and set(JVM_OPTIONS) <= set(argv)
    # a user's option follows them, and the JVM takes a flag's last value
    user = "-XX:+UseG1GC -XX:-UseParallelGC"
    options = static_conf(Settings(spark_java_options=user))["spark.driver.extraJavaOptions"]
    assert options.endswith(user) and options.index(JVM_OPTIONS[0]) < options.index(user)
    # on a cluster, started here or an existing one, the executors' JVMs get the same flags
    for cluster in ({"spark_workers": 2}, {"spark_master": "spark://spark-master:7077"}):
        conf = static_conf(Settings(spark_java_options=user, **cluster))
        assert conf["spark.executor.extraJavaOptions"] == " ".join([*JVM_OPTIONS, user])
