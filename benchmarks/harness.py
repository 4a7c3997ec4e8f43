"""One set-up for every benchmark's state and ports.

A benchmark runs the real platform (Spark Connect, Airflow, the metrics stack) beside whatever
else the machine runs: a ``make airflow``, the tests, another benchmark. :func:`isolate` gives
it a folder and a block of ports of its own, in the environment, before anything reads the
settings: call it at the top of the benchmark, before importing ``jobs`` (``Settings()`` reads
the environment each time, and the processes the benchmark starts inherit it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# The settings of the servers a benchmark may start, each on `port + its index`: a benchmark's
# block is len(PORTS) ports, so bases ten apart never meet.
PORTS = (
    "spark_connect_port",
    "spark_master_port",
    "airflow_port",
    "prometheus_port",
    "pushgateway_port",
    "alertmanager_port",
    "postgres_port",
    "redis_port",
    "s3_port",
)


def isolate(
    name: str,
    port: int,
    *,
    folder: str | Path | None = None,
    platform: str = "",
    drop_caller: bool = False,
    **settings: object,
) -> Path:
    """Point this process and those it starts at the benchmark ``name``'s own state and ports;
    returns its folder (``.state/bench-<name>`` unless ``folder`` names another), where it
    keeps its results.

    The platform's state folder (``NIGHTJAR_STATE_DIR``, Airflow's home inside it) is that
    folder, or its sub-folder ``platform``. The servers' ports are ``port`` onwards (``PORTS``;
    the tasks reach Spark Connect on ``port``). ``settings`` adds ``NIGHTJAR_<NAME>`` values
    (``spark_codegen="true"``); ``drop_caller`` first removes every ``NIGHTJAR_`` variable the
    caller set, for a benchmark whose figures must not depend on the caller's environment."""
    folder = Path(folder or ROOT / ".state" / f"bench-{name}").resolve()
    state = folder / platform if platform else folder
    if drop_caller:
        for variable in [v for v in os.environ if v.startswith("NIGHTJAR_")]:
            del os.environ[variable]
    os.environ.update(
        {
            "NIGHTJAR_STATE_DIR": str(state),
            "AIRFLOW_HOME": str(state / "airflow"),
            **{f"NIGHTJAR_{setting.upper()}": str(port + i) for i, setting in enumerate(PORTS)},
            "NIGHTJAR_SPARK_REMOTE": f"sc://127.0.0.1:{port}",
            **{f"NIGHTJAR_{setting.upper()}": str(value) for setting, value in settings.items()},
        }
    )
    # nothing in ~, as the Makefile and the tests have it
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # the processes it starts import jobs, tooling and benchmarks from this checkout
    paths = [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return folder


def start_afresh(folder: Path) -> Settings:
    """Stop whatever services a previous run left, empty the benchmark's ``folder`` and start
    the services, all but Airflow; returns the settings they run under (call after
    :func:`isolate`)."""
    from jobs.common.settings import Settings
    from tooling import services

    settings = Settings()
    services.down(settings)
    shutil.rmtree(folder, ignore_errors=True)
    services.up(settings, airflow=False)
    return settings


def save(results: object, out: Path, console: Any) -> Path:
    """Write a benchmark's ``results`` to ``out`` as indented JSON and print where (``console``
    is the benchmark's rich Console); returns ``out``."""
    out.write_text(json.dumps(results, indent=2))
    console.print(f"saved {out}")
    return out


def memory_mb(pid: int | str = "self", field: str = "VmHWM") -> float | None:
    """A process's ``field`` from /proc/<pid>/status in MB: VmHWM (its peak RSS; not
    ``ru_maxrss``, which a spawned process inherits from its parent) or VmRSS (now). None when
    the process has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return None


def descendants(pid: int) -> list[int]:
    """The process's children, theirs, and so on."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return children + [d for c in children for d in descendants(c)]


def peak_rss_mb(pids: list[int]) -> float:
    """The largest VmHWM among ``pids`` (0 when none is alive)."""
    return max((m for p in pids if (m := memory_mb(p)) is not None), default=0.0)
