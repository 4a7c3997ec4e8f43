"""DAG files only wire tasks: parsing them imports no job code, Spark or pandas."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_parsing_the_daily_dag_does_no_heavy_imports():
    code = (
        "import runpy, sys; ns = runpy.run_path('dags/nightjar_daily.py');"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pyspark', 'pandas', 'jobs', "
        "'deltalake'}); dag = ns['dag'];"
        "print(heavy, [t.task_id for t in dag.tasks], sorted(dag.tags))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == (
        "[] ['land', 'bronze', 'silver', 'check_silver', 'gold', 'check_gold'] "
        "['lakehouse', 'nightjar']"
    )
