"""The crash harness (benchmarks/chaos.py, `make bench-chaos`) on a small scale: one kill of a
multi-table stage (silver) and of the retraining policy (request_retrain), each checked and
re-run against a clean run. It builds its own clean run first (about ten minutes on two cores),
so it runs only when asked: ``NIGHTJAR_CHAOS=1 pytest tests/e2e/test_chaos_smoke.py``
(``NIGHTJAR_CHAOS_STAGES`` and ``NIGHTJAR_CHAOS_KILLS`` widen it).

Its platform (state folder, Spark Connect server) is its own, beside the test session's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PORT_OFFSET, ROOT, TEST_STATE

needs_chaos = pytest.mark.skipif(
    os.environ.get("NIGHTJAR_CHAOS") != "1",
    reason="the crash harness takes ~10 minutes: NIGHTJAR_CHAOS=1 runs it",
)
STAGES = os.environ.get("NIGHTJAR_CHAOS_STAGES", "silver,request_retrain")
KILLS = os.environ.get("NIGHTJAR_CHAOS_KILLS", "1")


@pytest.fixture(scope="module")
def results() -> dict:
    state = TEST_STATE / "chaos"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--kills", KILLS, "--stages", STAGES]
        + ["--state", str(state), "--port", str(15402 + PORT_OFFSET), "--seed", "7", "--fresh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads((state / "chaos.json").read_text())


@needs_chaos
def test_every_kill_leaves_readable_tables_and_unique_keys(results):
    for row in results["summary"]:
        assert row["kills"] == int(KILLS)
        assert row["corrupt_tables"] == 0, row
        assert row["duplicate_keys"] == 0, row


@needs_chaos
def test_every_rerun_heals_the_bookkeeping_and_equals_the_clean_run(results):
    for target, record in results["targets"].items():
        for kill in record["kills"]:
            assert kill["rerun"].startswith("exited 0"), kill
            assert kill["after_rerun"]["inconsistent"] == [], kill
            assert kill["differences"] == [], (target, kill["differences"])
        assert record["control"]["differences"] == [], target


@needs_chaos
def test_no_retrain_request_is_lost(results):
    assert all(row["lost_requests"] == 0 for row in results["summary"])


def test_kept_results_are_whole_per_seed_target_and_kill(tmp_path):
    """A result is kept whole under its seed, target and kill index, for the code it ran: a
    later call finds what an earlier one did, another seed or other code does not."""
    from benchmarks.chaos import Results

    kept = Results(tmp_path, "code-a", 31)
    kept.put("silver", 3, {"kill": 3, "equal": True})
    kept.put("silver", 0, {"kill": 0, "equal": False})
    kept.put("silver", "control", {"kill": "control", "differences": []})
    again = Results(tmp_path, "code-a", 31)
    assert again.get("silver", 3) == {"kill": 3, "equal": True}
    assert again.get("silver", 1) is None
    assert [k["kill"] for k in again.kills("silver")] == [0, 3]  # the control is not a kill
    assert again.get("silver", "control")["differences"] == []
    assert Results(tmp_path, "code-a", 7).kills("silver") == []
    other = Results(tmp_path, "code-b", 31)
    assert other.kills("silver") == [] and other.others() == 2
    assert not list(tmp_path.rglob("*.partial"))


def test_a_table_is_read_again_only_when_its_files_change(tmp_path):
    """The harness's content of a lakehouse equals lakehouse_content's, whether a table was
    read before (same files) or not (a commit since)."""
    import pandas as pd
    import pyarrow as pa
    from deltalake import write_deltalake

    from benchmarks.chaos import lakehouse_frames
    from tests.lakehouse.snapshot import lakehouse_content

    lakehouse = tmp_path / "lakehouse"
    for name in ("silver/flights", "gold/flights"):
        write_deltalake(str(lakehouse / name), pa.table({"id": [3, 1, 2], "x": [0.5, 0.1, 0.2]}))

    def same() -> None:
        expected, got = lakehouse_content(str(lakehouse)), lakehouse_frames(str(lakehouse))
        assert list(got) == list(expected)
        for name in expected:
            pd.testing.assert_frame_equal(got[name], expected[name])

    same()
    got = lakehouse_frames(str(lakehouse))
    got["gold.flights"].loc[0, "x"] = 9.0  # a caller's change does not reach the kept frame
    same()
    write_deltalake(
        str(lakehouse / "gold/flights"), pa.table({"id": [4], "x": [0.4]}), mode="append"
    )
    same()
    assert len(lakehouse_frames(str(lakehouse))["gold.flights"]) == 4
