"""The user guide's Feast SDK example (docs/guide.md) runs as written, on the shared feature
lakehouse, and the feast CLI commands the feature repo's README lists work against the
repository."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request

import pandas as pd

from jobs.common.settings import PROJECT_ROOT
from jobs.features import materialize, store
from jobs.features.store import feast_cli, feature_store
from tests.feature_lake import DAYS

GUIDE = PROJECT_ROOT / "docs" / "guide.md"


def sdk_example() -> str:
    text = GUIDE.read_text()
    block = re.search(r"<!-- sdk-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert block, "docs/guide.md lost its SDK example block"
    return block.group(1)


def test_the_readme_sdk_example_runs(feast_lake, monkeypatch, capsys):
    lake, _ = feast_lake
    materialize.run(lake, DAYS[2])
    for name, value in {
        "NIGHTJAR_STATE_DIR": str(lake.state_dir),
        "NIGHTJAR_LAKEHOUSE_URI": lake.lakehouse,
        "NIGHTJAR_FEAST_REGISTRY": lake.feast_registry,
    }.items():
        monkeypatch.setenv(name, value)
    scope: dict = {}
    exec(compile(sdk_example(), str(GUIDE), "exec"), scope)
    assert "carrier_stats ['flights_1d'" in capsys.readouterr().out  # (c) listed the features
    online: pd.DataFrame = scope["online"]  # (a)
    assert len(online) == 10 and online["carrier_stats__disrupted_rate_28d"].notna().all()
    assert set(online.flight_id.str[:8]) == {"20130304"}  # tomorrow = the day after 03-03
    train: pd.DataFrame = scope["train"]  # (b)
    assert set(train.flight_date) == {DAYS[1], DAYS[2]} and train.is_disrupted.notna().all()


def test_feast_materialize_commands_and_ui_work_on_the_repository(feast_lake):
    lake, _ = feast_lake
    feast_cli(["materialize", "2013-03-02T05:00:01", "2013-03-03T05:00:00"], lake)
    view = feature_store(lake).get_feature_view("carrier_stats")
    windows = {(a.isoformat()[:19], b.isoformat()[:19]) for a, b in view.materialization_intervals}
    assert ("2013-03-02T05:00:01", "2013-03-03T05:00:00") in windows
    feast_cli(["materialize-incremental", "2013-03-05T05:00:00"], lake)  # up to the newest day
    view = feature_store(lake).get_feature_view("carrier_stats")
    assert view.most_recent_end_time.isoformat().startswith("2013-03-05T05:00")

    port = 18888
    env = {
        **os.environ,
        "NIGHTJAR_STATE_DIR": str(lake.state_dir),
        "NIGHTJAR_LAKEHOUSE_URI": lake.lakehouse,
        "NIGHTJAR_FEAST_REGISTRY": lake.feast_registry,
    }
    nightjar = str(PROJECT_ROOT / ".venv" / "bin" / "nightjar")
    ui = subprocess.Popen(
        [nightjar, "feast", "ui", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/projects-list.json") as r:
                    projects = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or ui.poll() is not None:
                    raise
                time.sleep(1)
        assert '"id":"nightjar"' in projects
        url = f"http://127.0.0.1:{port}/api/v1/feature_services?project=nightjar"
        with urllib.request.urlopen(url) as r:
            assert f'"name":"{store.FEATURE_SERVICE}"' in r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
