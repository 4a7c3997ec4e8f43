"""Every benchmark takes its state folder and ports from one function (benchmarks/harness.py),
which sets them before the settings are read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# They set their own environment until they call isolate() too.
NOT_YET: set[str] = set()


def test_every_benchmark_sets_its_state_and_ports_through_the_harness():
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        if path.name in {"__init__.py", "harness.py", *NOT_YET}:
            continue
        source = path.read_text()
        assert "isolate(" in source, path.name
        assert "NIGHTJAR_STATE_DIR" not in source and '_PORT"' not in source, path.name


def test_isolate_gives_the_settings_a_folder_and_a_block_of_ports(tmp_path):
    code = (
        "import json; from benchmarks.harness import isolate;"
        f"folder = isolate('x', 26000, folder={str(tmp_path)!r}, platform='p', spark_codegen=True);"
        "from jobs.common.settings import Settings; s = Settings();"
        "print(json.dumps([str(folder), str(s.state_dir), str(s.airflow_home), s.spark_remote,"
        " s.spark_connect_port, s.spark_master_port, s.airflow_port, s.s3_port, s.spark_codegen,"
        " 'NIGHTJAR_OTHER' in __import__('os').environ]))"
    )
    drop = "isolate('y', 26010, drop_caller=True); import os; print('NIGHTJAR_OTHER' in os.environ)"
    env = {**os.environ, "NIGHTJAR_OTHER": "1"}
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "check": True}
    out = subprocess.run([sys.executable, "-c", code], **run).stdout
    assert json.loads(out.splitlines()[-1]) == [
        str(tmp_path),
        str(tmp_path / "p"),
        str(tmp_path / "p" / "airflow"),
        "sc://127.0.0.1:26000",
        26000,
        26001,
        26002,
        26008,
        True,
        True,  # the caller's other settings stay
    ]
    code = f"from benchmarks.harness import isolate; {drop}"
    assert subprocess.run([sys.executable, "-c", code], **run).stdout.strip() == "False"
