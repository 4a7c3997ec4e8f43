"""The Great Expectations runner on crafted frames: severities, suites read from files, Docs."""

import datetime as dt
import json
import re
import shutil

import pandas as pd
import pytest

from jobs.quality import gx_runner

DAY = dt.date(2013, 1, 1)
PARAMS = {"carriers": ["UA", "AA"], "airports": ["JFK", "EWR"], "logical_date": ["2013-01-01"]}


def frame(**changes):
    df = pd.DataFrame(
        {
            "flight_id": ["f1", "f2", "f3"],
            "carrier": ["UA", "AA", "UA"],
            "origin": ["JFK", "EWR", "JFK"],
            "dest": ["IAH", "ORD", "LAX"],
            "sched_dep_utc": pd.to_datetime(["2013-01-01 10:00"] * 3),
            "distance": [1400.0, 719.0, 2475.0],
            "dep_delay": [2.0, -3.0, 30.0],
            "arr_delay": [-5.0, 1.0, 41.0],
            "air_time": [190.0, 110.0, 330.0],
            "sched_dep_local_date": ["2013-01-01"] * 3,
        }
    )
    for column, values in changes.items():
        df[column] = values
    return df


@pytest.fixture()
def quality_settings(settings, tmp_path):
    return settings.model_copy(update={"state_dir": tmp_path})


def run(df, settings, run_id="r"):
    return gx_runner.validate(df, "silver_flights", "silver", DAY, PARAMS, settings, run_id)


def test_a_clean_frame_passes_every_expectation_and_gets_a_docs_page(quality_settings):
    outcome = run(frame(), quality_settings)
    assert len(outcome.rows) == len(gx_runner.load_suite("silver_flights")["expectations"])
    assert outcome.failed == []
    gx_runner.enforce(outcome)  # does not raise
    page = outcome.docs_page.read_text()
    assert "silver_flights" in page and "unique" in page  # the suite and its rendered checks
    assert "2013-01-01" in page  # the run, named after its logical date


def test_critical_failures_stop_with_the_expectations_and_observed_values(quality_settings):
    outcome = run(frame(flight_id=["f1", "f1", "f3"], carrier=["UA", "ZZ", "UA"]), quality_settings)
    failed = {(r["expectation"], r["column"]) for r in outcome.failed_with("critical")}
    assert failed == {
        ("expect_column_values_to_be_unique", "flight_id"),
        ("expect_column_values_to_be_in_set", "carrier"),
    }
    with pytest.raises(gx_runner.QualityGateError) as error:
        gx_runner.enforce(outcome)
    assert "2 critical expectation(s) failed" in str(error.value)
    assert '"examples": ["ZZ"]' in str(error.value)


def test_a_warning_is_recorded_and_does_not_stop(quality_settings):
    outcome = run(frame(dep_delay=[2.0, 2000.0, 1.0]), quality_settings)
    assert [(r["column"], r["severity"]) for r in outcome.failed] == [("dep_delay", "warning")]
    assert json.loads(outcome.failed[0]["observed_value"])["examples"] == [2000.0]
    gx_runner.enforce(outcome)  # does not raise


def test_the_results_keep_what_summary_results_would(quality_settings, monkeypatch):
    """The runner asks GX for BASIC results: every row it records (observed values, unexpected
    counts and examples, a column set's mismatch) is the same as from GX's fuller SUMMARY."""
    bad = frame(
        flight_id=["f1", "f1", "f3"], carrier=["UA", "ZZ", "UA"], dep_delay=[2.0, 2000.0, 1.0]
    )
    columns = {"columns": ["flight_id", "carrier", "not_landed"]}

    def rows(result_format):
        monkeypatch.setattr(gx_runner, "RESULT_FORMAT", result_format)
        silver = run(bad, quality_settings).rows
        bronze = gx_runner.validate(
            bad, "bronze_flights", "bronze", DAY, columns, quality_settings, "r"
        ).rows
        return silver + bronze

    basic = rows("BASIC")
    assert basic == rows("SUMMARY")
    failed = {
        (r["expectation"], r["column"]): r["observed_value"] for r in basic if not r["success"]
    }
    assert json.loads(failed[("expect_column_values_to_be_in_set", "carrier")])["examples"] == [
        "ZZ"
    ]
    assert (
        json.loads(failed[("expect_column_values_to_be_unique", "flight_id")])["unexpected_count"]
        == 2
    )
    assert "not_landed" in failed[("expect_table_columns_to_match_set", None)]


def test_the_suite_is_read_from_its_file(quality_settings, tmp_path, monkeypatch):
    suites = tmp_path / "expectations"
    shutil.copytree(gx_runner.SUITES_DIR, suites)
    path = suites / "silver_flights.json"
    spec = json.loads(path.read_text())
    for expectation in spec["expectations"]:
        if expectation["kwargs"].get("column") == "distance":
            expectation["kwargs"]["max_value"] = 2000  # 2475 miles now fails
    path.write_text(json.dumps(spec))
    monkeypatch.setattr(gx_runner, "SUITES_DIR", suites)
    failed = run(frame(), quality_settings).failed_with("critical")
    assert [(r["column"], json.loads(r["observed_value"])["examples"]) for r in failed] == [
        ("distance", [2475.0])
    ]


def test_a_suite_with_an_unknown_severity_is_refused(tmp_path, monkeypatch):
    (tmp_path / "bad.json").write_text(
        json.dumps(
            {
                "name": "bad",
                "expectations": [
                    {
                        "type": "expect_table_row_count_to_be_between",
                        "kwargs": {"min_value": 1},
                        "meta": {"severity": "fatal"},
                    }
                ],
            }
        )
    )
    monkeypatch.setattr(gx_runner, "SUITES_DIR", tmp_path)
    with pytest.raises(gx_runner.NightjarError, match="severity 'fatal'"):
        gx_runner.load_suite("bad")


def test_quality_docs_rebuild_an_index_of_every_stored_validation(quality_settings):
    run(frame(), quality_settings, run_id="first")
    run(frame(dep_delay=[2.0, 2000.0, 1.0]), quality_settings, run_id="second")
    index = gx_runner.rebuild_docs(quality_settings).read_text()
    assert "2013-01-01-first" in index and "2013-01-01-second" in index


def test_docs_pages_render_the_same_from_cached_templates(quality_settings, monkeypatch):
    """The first page fills the template cache, the next renders from it: same HTML as GX's own
    view, whose Jinja environment compiles every template again."""
    from great_expectations.render.view import DefaultJinjaPageView

    cached = run(frame(), quality_settings, run_id="cached").docs_page
    assert list((quality_settings.state_dir / "quality" / "jinja_cache").iterdir())
    again = run(frame(), quality_settings, run_id="again").docs_page
    monkeypatch.setattr(
        gx_runner, "_cached_view", lambda root: {"class_name": DefaultJinjaPageView.__name__}
    )
    stock = run(frame(), quality_settings, run_id="stock").docs_page

    def body(page):  # the run's name, the render time and element ids differ between runs
        text = page.read_text()
        for run_id in ("cached", "again", "stock"):
            text = text.replace(f"2013-01-01-{run_id}", "RUN")
        text = re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "ID", text)
        return re.sub(r"\d{4}-\d{2}-\d{2}T[\d:.]+Z?|\d{8}T\d{6}\.\d+Z", "T", text)

    assert body(cached) == body(again) == body(stock)
