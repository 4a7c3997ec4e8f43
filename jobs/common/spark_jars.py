"""The jars Spark needs beyond pyspark's own, fetched once into the project: Delta Lake's, and
Hadoop's S3A with the AWS SDK (object storage, see ``jobs/common/storage.py``).

``make setup`` runs ``python -m jobs.common.spark_jars``: Spark's own Ivy (the jar pyspark ships)
resolves :func:`packages` from Maven Central into ``.cache/ivy`` and copies each set's jars into
``.cache/spark-jars/`` (S3A's into ``.cache/spark-jars-s3/``), with a manifest naming the
coordinates. Every session and the Spark Connect server then put those local files on the
classpath (``spark.jars``; S3A's only where object storage is configured): no network and no
resolution at session start, unlike ``configure_spark_with_delta_pip`` (``spark.jars.packages``,
which resolves through Ivy into ``~/.ivy2`` every time a JVM starts).

Where the jars cannot be fetched, setup says so in one line: without Delta's the platform runs on
delta-rs, without S3A Spark cannot read a bucket.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from jobs.common.settings import PROJECT_ROOT

# Scala version of pyspark's own jars (spark-core_2.13): Delta's artifact must match it.
SCALA = "2.13"
MANIFEST = "manifest.json"


def _hadoop_version() -> str:
    """The Hadoop pyspark ships (``hadoop-client-api-3.5.0.jar``): S3A must be the same."""
    jar = next(_spark_jars().glob("hadoop-client-api-*.jar"))
    return jar.name.removeprefix("hadoop-client-api-").removesuffix(".jar")


# Each set of jars Spark may need, by what it is for.
JAR_SETS = ("delta", "s3")


def packages(jar_set: str = "delta") -> tuple[str, ...]:
    """Maven coordinates matching the locked Python packages. Delta's jar and its Python API
    are released together under one version number; S3A's version is Hadoop's, and it brings
    the AWS SDK bundle Hadoop was built against."""
    if jar_set == "s3":
        return (f"org.apache.hadoop:hadoop-aws:{_hadoop_version()}",)
    return (f"io.delta:delta-spark_{SCALA}:{version('delta-spark')}",)


def jars_dir(jar_set: str = "delta") -> Path:
    root = Path(os.environ.get("NIGHTJAR_SPARK_JARS_DIR", PROJECT_ROOT / ".cache" / "spark-jars"))
    return root if jar_set == "delta" else root.with_name(f"{root.name}-{jar_set}")


def installed_jars(directory: Path | None = None, jar_set: str = "delta") -> list[str]:
    """The fetched jars for the current :func:`packages`, or ``[]`` when setup could not fetch
    them (or fetched them for other versions)."""
    directory = directory or jars_dir(jar_set)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    jars = [str(directory / name) for name in manifest.get("jars", [])]
    if tuple(manifest.get("packages", ())) != packages(jar_set) or not all(
        map(os.path.exists, jars)
    ):
        return []
    return jars


def _spark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def _artifact(jar_name: str) -> str:
    """``hadoop-client-api-3.5.0.jar`` -> ``hadoop-client-api``."""
    match = re.match(r"(.+?)-\d[^/]*\.jar$", jar_name)
    return match.group(1) if match else jar_name


def fetch(
    directory: Path | None = None, cache: Path | None = None, jar_set: str = "delta"
) -> list[str]:
    """Resolve :func:`packages` with Ivy and install the jars Spark does not already ship.

    Ivy resolves the whole dependency graph, including artifacts pyspark carries in other
    versions (Hadoop, Parquet, Scala, log4j); those are left out, since Spark's own copies come
    first on the classpath anyway. Raises ``RuntimeError`` with Ivy's reason on failure."""
    from jobs.common.spark import java_home

    directory = directory or jars_dir(jar_set)
    cache = cache or PROJECT_ROOT / ".cache" / "ivy"
    ivy = next(_spark_jars().glob("ivy-*.jar"), None)
    if ivy is None:
        raise RuntimeError(f"pyspark ships no Ivy jar in {_spark_jars()}")
    java = str(Path(java_home()) / "bin" / "java") if java_home() else "java"
    shipped = {_artifact(p.name) for p in _spark_jars().glob("*.jar")}
    with tempfile.TemporaryDirectory(dir=cache.parent if cache.parent.exists() else None) as tmp:
        retrieved = Path(tmp) / "jars"
        for coordinate in packages(jar_set):
            group, artifact, rev = coordinate.split(":")
            done = subprocess.run(
                [
                    java,
                    f"-Divy.home={cache}",
                    f"-Duser.home={cache}",  # Ivy's defaults must not reach ~
                    "-jar",
                    str(ivy),
                    "-dependency",
                    group,
                    artifact,
                    rev,
                    "-confs",
                    "default",
                    "-types",
                    "jar",
                    "-cache",
                    str(cache),
                    "-retrieve",
                    f"{retrieved}/[artifact]-[revision](-[classifier]).[ext]",
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                problems = [
                    line.strip()
                    for line in (done.stdout + done.stderr).splitlines()
                    if "UNRESOLVED" in line or "unresolved" in line or "FAILED" in line
                ]
                why = "; ".join(problems[:3]) or (done.stderr or done.stdout).strip()[-300:]
                raise RuntimeError(f"Ivy could not resolve {coordinate}: {' '.join(why.split())}")
        keep = sorted(p.name for p in retrieved.glob("*.jar") if _artifact(p.name) not in shipped)
        staged = Path(tmp) / "staged"
        staged.mkdir()
        for name in keep:
            shutil.copy2(retrieved / name, staged / name)
        (staged / MANIFEST).write_text(
            json.dumps({"packages": list(packages(jar_set)), "jars": keep}, indent=2) + "\n"
        )
        # Replace the folder in one rename: a session never sees half a set of jars.
        directory.parent.mkdir(parents=True, exist_ok=True)
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        staged.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    return installed_jars(directory, jar_set)


WITHOUT = {
    "delta": "Delta runs on delta-rs only",
    "s3": "Spark cannot read or write object storage (s3://)",
}


def main() -> int:
    """``make setup``'s step: fetch each set once, say in one line what Spark will use."""
    for jar_set in JAR_SETS:
        wanted = ", ".join(packages(jar_set))
        if jars := installed_jars(jar_set=jar_set):
            print(f"Spark jars: {wanted} present ({len(jars)} jars in {jars_dir(jar_set)})")
            continue
        try:
            jars = fetch(jar_set=jar_set)
        except (RuntimeError, OSError) as exc:
            print(
                f"Spark jars: could not fetch {wanted} ({exc}); {WITHOUT[jar_set]} "
                "(run `make setup` again to retry)",
                file=sys.stderr,
            )
            continue
        print(f"Spark jars: fetched {wanted} ({len(jars)} jars into {jars_dir(jar_set)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
