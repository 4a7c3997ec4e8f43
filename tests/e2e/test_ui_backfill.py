"""The Airflow UI as users use it, in headless Chromium (Playwright, Debian's chromium binary),
against an Airflow the project starts with the production configuration that can run here: the
metadata DB on the test run's private PostgreSQL (LocalExecutor) and Feast's online store on its
private Redis (database 9).

Log in; see the Nightjar DAGs with their docs and tags; unpause and trigger the daily DAG for
2013-01-01; create a backfill for 2013-01-02..01-04 from the UI's backfill form; see the runs
succeed; open a task's log; follow the monitor task's link to its report. A screenshot of each
step is saved under .state/test/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.conftest import TEST_STATE
from tooling import services
from tooling.airflow_api import AirflowAPI, admin_password

pytestmark = pytest.mark.airflow
DAG_ID = "nightjar_daily"
SHOTS = TEST_STATE / "screenshots"
DATABASE = "nightjar_ui_test"
REDIS_DB = 9
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def platform(spark, postgres, redis_server):
    from jobs.common.settings import Settings

    redis_server.client(REDIS_DB).flushdb()
    postgres.create_database(DATABASE)
    env = {
        "NIGHTJAR_STATE_DIR": str(TEST_STATE / "ui"),
        "AIRFLOW_HOME": str(TEST_STATE / "ui" / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url(DATABASE),
        "NIGHTJAR_FEAST_ONLINE_STORE": "redis",
        "NIGHTJAR_FEAST_REDIS": redis_server.connection_string(REDIS_DB),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = Settings()
        services.up(settings, spark=False)  # the session's Spark Connect server serves it
        try:
            api = AirflowAPI(settings)
            api.wait_for_dag(DAG_ID)
            yield settings, api, postgres, redis_server
        finally:
            services.down(settings, services.AIRFLOW_COMPONENTS)


@pytest.fixture(scope="module")
def page(platform):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,  # Debian's chromium: Playwright never downloads one
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def url(settings, path: str = "") -> str:
    return f"http://{settings.airflow_host}:{settings.airflow_port}{path}"


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def pick_datetime(page, dialog, index: int, day: dt.date) -> None:
    """Fill the UI's date-time picker number ``index`` of the dialog (its popover has a
    YYYY/MM/DD and an HH:mm field)."""
    dialog.get_by_test_id("datetime-input").nth(index).click()
    popover = page.locator("[data-scope=popover][data-part=content][data-state=open]").last
    popover.get_by_placeholder("YYYY/MM/DD").fill(day.strftime("%Y/%m/%d"))
    popover.get_by_placeholder("HH:mm").fill("00:00")
    popover.get_by_placeholder("HH:mm").press("Enter")
    page.keyboard.press("Escape")  # close the popover, keep the dialog
    dialog.get_by_test_id("datetime-input").nth(index).filter(
        has_text=day.strftime("%Y")
    ).wait_for()


def wait_for_runs(api, days: list[dt.date], timeout: float = 600) -> list[dict]:
    wanted = {d.isoformat() for d in days}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in api.dag_runs(DAG_ID) if r["logical_date"][:10] in wanted]
        if len(runs) == len(wanted) and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        time.sleep(3)
    raise TimeoutError(f"runs for {sorted(wanted)} not finished after {timeout}s")


def test_log_in_and_see_the_nightjar_dags_with_docs_and_tags(platform, page):
    settings, *_ = platform
    page.goto(url(settings, "/"))
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(admin_password(settings))
    shot(page, "01-login")
    page.locator("button[type=submit]").click()
    page.wait_for_url(url(settings, "/"))
    page.goto(url(settings, "/dags"))
    page.get_by_text("nightjar_training").wait_for()
    shot(page, "02-dag-list")
    listing = page.locator("body").inner_text()
    assert "nightjar_daily" in listing and "nightjar_training" in listing
    assert "lakehouse, nightjar" in listing and "nightjar, training" in listing
    page.goto(url(settings, f"/dags/{DAG_ID}"))
    page.get_by_role("button", name="Dag Docs").click()
    docs = page.get_by_role("dialog")
    docs.get_by_text("nightjar_daily — the lakehouse's nightly run").wait_for()
    assert "request_retrain" in docs.inner_text()
    shot(page, "03-dag-docs")
    page.keyboard.press("Escape")


def test_unpause_and_trigger_the_daily_dag_for_a_date(platform, page):
    settings, api, *_ = platform
    assert api.get(f"/dags/{DAG_ID}")["is_paused"] is True
    page.locator("label:has(input[type=checkbox])").first.click()  # the pause switch
    deadline = time.monotonic() + 30
    while api.get(f"/dags/{DAG_ID}")["is_paused"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert api.get(f"/dags/{DAG_ID}")["is_paused"] is False
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    pick_datetime(page, dialog, 0, dt.date(2013, 1, 1))
    shot(page, "04-trigger-form")
    dialog.get_by_role("button", name="Trigger").click()
    (run,) = wait_for_runs(api, [dt.date(2013, 1, 1)])
    assert run["run_type"] == "manual" and run["state"] == "success"


def test_a_backfill_from_the_ui_form_runs_three_days(platform, page):
    settings, api, *_ = platform
    page.goto(url(settings, f"/dags/{DAG_ID}"))
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Backfill", exact=True).click()
    pick_datetime(page, dialog, 0, dt.date(2013, 1, 2))
    pick_datetime(page, dialog, 1, dt.date(2013, 1, 4))
    # a DAG with depends_on_past tasks must reprocess completed runs too (the form says so)
    dialog.get_by_text("All Runs", exact=True).click()
    dialog.locator("input[name=max_active_runs]").fill("3")
    dialog.get_by_text("3 runs will be triggered").wait_for()
    shot(page, "05-backfill-form")
    dialog.get_by_role("button", name="Run Backfill").click()
    days = [dt.date(2013, 1, d) for d in (2, 3, 4)]
    runs = wait_for_runs(api, days)
    assert sorted((r["logical_date"][:10], r["run_type"], r["state"]) for r in runs) == [
        (d.isoformat(), "backfill", "success") for d in days
    ]
    page.goto(url(settings, f"/dags/{DAG_ID}/runs"))
    page.get_by_text("backfill__2013-01-05", exact=False).first.wait_for()
    shot(page, "06-runs")


def test_a_task_log_opens_in_the_ui(platform, page):
    settings, api, *_ = platform
    run = next(r for r in api.dag_runs(DAG_ID) if r["logical_date"].startswith("2013-01-03"))
    page.goto(url(settings, f"/dags/{DAG_ID}/runs/{run['dag_run_id']}/tasks/land"))
    page.get_by_text("land 2013-01-03 done in").wait_for()
    shot(page, "07-task-log")
    assert "landed 2013-01-03" in page.locator("body").inner_text()


def test_the_monitor_task_links_to_its_days_report(platform, page):
    settings, api, *_ = platform
    run = next(r for r in api.dag_runs(DAG_ID) if r["logical_date"].startswith("2013-01-04"))
    page.goto(url(settings, f"/dags/{DAG_ID}/runs/{run['dag_run_id']}/tasks/monitor"))
    # the task's extra link (not the "Monitoring reports" navigation entry)
    page.get_by_text("Details", exact=True).last.click()  # the task's Details tab lists them
    link = page.get_by_role("link", name="Monitoring report", exact=True)
    link.wait_for()
    shot(page, "08-monitor-task")
    target = url(settings, "/nightjar/reports/2013-01-04/index.html")
    assert link.get_attribute("href") in (target, "/nightjar/reports/2013-01-04/index.html")
    if link.get_attribute("target") == "_blank":  # extra links open in a new tab
        with page.context.expect_page() as opened:
            link.click()
        report = opened.value
    else:
        link.click()
        report = page
    report.wait_for_url(target)
    assert "Monitoring of 2013-01-04" in report.locator("h1").inner_text()
    report.screenshot(path=str(SHOTS / "09-monitoring-report.png"))


def test_the_runs_lived_in_postgres_and_the_features_in_redis(platform):
    _, _, postgres, redis_server = platform
    conn = postgres.connect(DATABASE)
    with conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT logical_date::date, state FROM dag_run WHERE dag_id = %s ORDER BY 1", (DAG_ID,)
        )
        rows = cursor.fetchall()
    conn.close()
    assert rows == [(dt.date(2013, 1, d), "success") for d in (1, 2, 3, 4)]
    assert redis_server.client(REDIS_DB).dbsize() > 0
