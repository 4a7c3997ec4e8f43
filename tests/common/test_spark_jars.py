"""Delta's jars for Spark: fetched once by `make setup`, then local files on every classpath."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from jobs.common import spark_jars
from jobs.common.settings import PROJECT_ROOT, Settings
from jobs.common.spark import static_conf


def test_setup_fetched_the_jars_of_the_locked_delta_spark_into_the_project():
    jars = spark_jars.installed_jars()
    names = {Path(j).name for j in jars}
    assert f"delta-spark_2.13-{version('delta-spark')}.jar" in names
    assert f"delta-storage-{version('delta-spark')}.jar" in names
    assert all(Path(j).is_relative_to(PROJECT_ROOT / ".cache") for j in jars)
    # nothing Spark already ships (Hadoop, Parquet, Scala) comes twice
    assert not {n for n in names if n.startswith(("hadoop-client", "parquet-", "scala-library"))}


def test_every_session_gets_the_local_jars_and_no_resolution_at_start():
    conf = static_conf(Settings(s3_endpoint=None))
    assert conf["spark.jars"].split(",") == spark_jars.installed_jars()
    # object storage adds S3A and the AWS SDK Hadoop was built against, and nothing else
    with_s3 = static_conf(Settings(s3_endpoint="http://127.0.0.1:1"))["spark.jars"].split(",")
    s3_jars = spark_jars.installed_jars(jar_set="s3")
    assert with_s3 == spark_jars.installed_jars() + s3_jars
    hadoop = spark_jars._hadoop_version()
    assert {f"hadoop-aws-{hadoop}.jar", "bundle-2.35.4.jar"} <= {Path(j).name for j in s3_jars}
    assert "spark.jars.packages" not in conf  # no Ivy resolution when a JVM starts
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"


def test_jars_for_other_versions_are_not_used(tmp_path):
    (tmp_path / "delta-spark_2.13-0.1.jar").write_bytes(b"")
    (tmp_path / spark_jars.MANIFEST).write_text(
        json.dumps(
            {"packages": ["io.delta:delta-spark_2.13:0.1"], "jars": ["delta-spark_2.13-0.1.jar"]}
        )
    )
    assert spark_jars.installed_jars(tmp_path) == []


def test_a_fetch_that_fails_says_so_in_one_line_and_setup_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NIGHTJAR_SPARK_JARS_DIR", str(tmp_path / "jars"))
    monkeypatch.setattr(spark_jars, "JAR_SETS", ("delta",))
    monkeypatch.setattr(
        spark_jars, "packages", lambda jar_set="delta": ("io.delta:delta-spark_2.13:0.0.0-none",)
    )
    assert spark_jars.main() == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("Spark jars: could not fetch io.delta:delta-spark_2.13:0.0.0-none")
    assert "runs on delta-rs only" in err
    assert spark_jars.installed_jars(tmp_path / "jars") == []
