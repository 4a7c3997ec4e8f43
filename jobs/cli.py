"""``nightjar``: the command line over the job code (also what `make` targets call).

Examples::

    nightjar stage silver --date 2013-01-05     # one stage, one day, in-process
    nightjar services up                        # Spark Connect + Airflow, in the background
    nightjar demo --start 2013-01-01 --end 2013-02-28   # backfill through Airflow + summary
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator

import typer
from rich.console import Console

from jobs import stages
from jobs.common.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
services_app = typer.Typer(no_args_is_help=True, help="Local long-lived services.")
app.add_typer(services_app, name="services")
model_app = typer.Typer(
    no_args_is_help=True, help="The registered model: train, decisions, rollback."
)
app.add_typer(model_app, name="model")
console = Console()


def _date(value: str) -> dt.date:
    from jobs.common.dates import parse_date

    return parse_date(value)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    # Anything that imports Airflow here must not create ~/airflow.
    os.environ.setdefault("AIRFLOW_HOME", str(Settings().airflow_home))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command()
def stage(
    name: str = typer.Argument(..., help=" | ".join(stages.NAMES)),
    date: str = typer.Option(..., "--date", "-d", help="the logical date (first day)"),
    end: str | None = typer.Option(
        None,
        help="run over the data interval [date, end) instead of one day "
        f"({', '.join(stages.INTERVAL)})",
    ),
    run_id: str | None = typer.Option(None),
) -> None:
    """Run one stage for one logical date, or for a data interval (``--end``), in-process."""
    from jobs.common.errors import StageSkipped
    from jobs.pipeline import run_stage

    until = _date(end) if end else None
    try:
        result = run_stage(name, _date(date), run_id, end=until)
        console.print_json(json.dumps(result, default=str))
    except StageSkipped as skipped:
        console.print(f"[yellow]{name} skipped:[/yellow] {skipped}")


@app.command()
def day(date: str = typer.Option(..., "--date", "-d")) -> None:
    """Run every stage of the daily DAG for one date, in-process (no Airflow)."""
    from jobs.common.errors import StageSkipped
    from jobs.pipeline import run_stage

    for name in stages.NAMES:
        try:
            run_stage(name, _date(date))
        except StageSkipped as skipped:
            console.print(f"[yellow]{name} skipped:[/yellow] {skipped}")
    console.print(f"[green]day {date} done[/green]")


@contextlib.contextmanager
def servers_or_exit() -> Iterator[None]:
    """A private server the platform needs and cannot start: its one-line reason, exit 1."""
    from tooling.servers import ServerUnavailable

    try:
        yield
    except ServerUnavailable as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


@services_app.command("up")
def services_up(
    airflow: bool = typer.Option(True, help="Also start Airflow's components"),
    observability: bool = typer.Option(
        True, help="Also start Prometheus, its Pushgateway and Alertmanager"
    ),
) -> None:
    """Start Spark Connect (and Airflow, Prometheus) in the background; waits until they
    answer."""
    from tooling import airflow_login, services

    settings = Settings()
    with servers_or_exit():
        started = services.up(settings, airflow=airflow, observability=observability)
    console.print(f"up: {', '.join(s.name for s in started)} (logs in {settings.run_dir})")
    if airflow:
        console.print(airflow_login.instructions(settings))


@services_app.command("down")
def services_down() -> None:
    """Stop everything `services up` started."""
    from tooling import services

    stopped = services.down(Settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("exec")
def services_exec(name: str = typer.Argument(..., help="spark-connect")) -> None:
    """Replace this process with a service, in the foreground, configured from the settings
    exactly as `services up` would (what a container runs)."""
    import os

    from tooling import services

    if name != "spark-connect":
        raise typer.BadParameter(f"unknown service {name!r}; expected spark-connect")
    service = services.spark_connect_service(Settings())
    os.execvpe(service.command[0], service.command, service.env)


@services_app.command("status")
def services_status() -> None:
    from tooling import services

    for name, pid in services.status(Settings()).items():
        console.print(f"{name:15s} {'running, pid ' + str(pid) if pid else 'stopped'}")


@app.command()
def demo(
    start: str = typer.Option(None),
    end: str = typer.Option(None),
    keep_running: bool = typer.Option(False, help="Leave Airflow running afterwards"),
) -> None:
    """Backfill the daily DAG through Airflow's scheduler over a window, then summarise."""
    from tooling import demo as demo_run

    settings = Settings()
    with servers_or_exit():
        demo_run.run(
            settings,
            _date(start) if start else settings.demo_start,
            _date(end) if end else settings.demo_end,
            keep_running=keep_running,
        )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Run the feast CLI on feature_repo/ with the platform's settings, e.g. "
    "`nightjar feast apply`, `nightjar feast materialize-incremental 2013-03-01T00:00:00`, "
    "`nightjar feast ui`.",
)
def feast(ctx: typer.Context) -> None:
    from jobs.features.store import feast_cli

    feast_cli(list(ctx.args), Settings())


@app.command("training-set")
def training_set(
    start: str = typer.Option(..., help="first flight date"),
    end: str = typer.Option(..., help="last flight date"),
    out: str = typer.Option(..., help="Parquet file to write"),
) -> None:
    """Build the labeled, point-in-time training frame for a window through Feast."""
    from jobs.features.training import training_frame

    frame = training_frame(Settings(), _date(start), _date(end))
    frame.to_parquet(out, index=False)
    console.print(f"{len(frame):,} flights x {frame.shape[1]} columns -> {out}")


@model_app.command("train")
def model_train(
    end: str = typer.Option(None, help="last labeled flight date (default: newest in gold)"),
    window_days: int = typer.Option(None, help="labeled days in the window (default 60)"),
) -> None:
    """Train, track in MLflow, register a challenger and promote it if it wins; serves the
    pending retrain requests like the nightjar_training DAG."""
    from jobs.common.errors import StageSkipped
    from jobs.training import requests, train

    try:
        served = requests.train_pending(
            Settings(),
            "cli",
            default_trigger="manual (nightjar model train)",
            end=_date(end) if end else None,
            window_days=window_days,
        )
    except StageSkipped as skipped:
        console.print(f"[yellow]nothing to train:[/yellow] {skipped}")
        return
    console.print_json(train.describe(served.result))


@model_app.command("rollback")
def model_rollback(
    from_night: str = typer.Option(
        None,
        "--from-night",
        help="First night the restored champion scores, YYYY-MM-DD (default: the night after "
        "the newest one scored; give an earlier night to re-score it with the restored model).",
    ),
) -> None:
    """Move the champion alias back to the previous champion (recorded as a decision)."""
    from jobs.training import registry, tracking

    settings = Settings()
    night = _date(from_night) if from_night else None
    version = registry.rollback(settings, tracking.client(settings), night)
    console.print(f"{settings.model_name}: champion is v{version} again")


@model_app.command("decisions")
def model_decisions() -> None:
    """Every promotion, rejection and rollback, oldest first."""
    from jobs.training import registry

    frame = registry.decisions(Settings())
    columns = [
        "decided_at",
        "version",
        "decision",
        "previous_champion",
        "champion_after",
        "from_night",
        "reason",
    ]
    console.print(frame[columns].to_string(index=False) if len(frame) else "no decisions yet")


@model_app.command("reproduce")
def model_reproduce(run_id: str) -> None:
    """Re-train from a run's recorded inputs and compare its test predictions."""
    from jobs.training import train

    frame = train.reproduce(Settings(), run_id)
    same = (frame.p_logged == frame.p_again).all()
    console.print(f"{len(frame)} test predictions; identical: {bool(same)}")
    if not same:
        raise typer.Exit(1)


@model_app.command("ui")
def model_ui(port: int = typer.Option(5000), host: str = typer.Option("127.0.0.1")) -> None:
    """MLflow's UI over the configured tracking store (runs, models, aliases)."""
    import subprocess
    import sys
    from pathlib import Path

    from jobs.training import tracking

    settings = Settings()
    tracking.client(settings)  # creates the store and the experiment on first use
    mlflow = Path(sys.executable).with_name("mlflow")
    console.print(f"MLflow UI on http://{host}:{port} ({settings.tracking_uri})")
    subprocess.run(
        [str(mlflow), "server", "--backend-store-uri", settings.tracking_uri,
         "--host", host, "--port", str(port)],
        check=False,
    )  # fmt: skip


predictions_app = typer.Typer(no_args_is_help=True, help="The nightly predictions.")
app.add_typer(predictions_app, name="predictions")


@predictions_app.command("top")
def predictions_top(
    date: str = typer.Option(..., "--date", "-d", help="flight date (tomorrow of a run)"),
    n: int = typer.Option(20, help="how many flights"),
) -> None:
    """The champion's highest-risk flights scheduled on a date, and why: for the riskiest
    flagged ones, the features that raise or lower their risk most, with their values."""
    from jobs.scoring.lineage import top_risk

    frame = top_risk(Settings(), _date(date), n)
    table = frame.drop(columns="why").to_string(index=False).splitlines()
    lines = [f"{row}  {why}".rstrip() for row, why in zip(table, ["why", *frame.why], strict=True)]
    console.print("\n".join(lines), soft_wrap=True, markup=False, highlight=False)


@predictions_app.command("lineage")
def predictions_lineage(
    flight_id: str = typer.Argument(..., help="e.g. 20130304-UA-1545-EWR"),
    date: str = typer.Option(..., "--date", "-d", help="the flight's date"),
) -> None:
    """A prediction's chain: model version -> MLflow run -> Delta versions it trained on."""
    from jobs.scoring.lineage import lineage

    console.print_json(json.dumps(lineage(Settings(), flight_id, _date(date)), default=str))


@app.command("quality-docs")
def quality_docs() -> None:
    """Rebuild the Great Expectations Data Docs from every stored validation and say where."""
    from jobs.quality.gx_runner import rebuild_docs

    index = rebuild_docs(Settings())
    console.print(f"Data Docs: file://{index}")


@app.command("monitoring-ui")
def monitoring_ui(port: int = typer.Option(8001), host: str = typer.Option("127.0.0.1")) -> None:
    """Evidently's UI over the monitoring workspace: drift and AUC over the monitored days."""
    import os
    import sys
    from pathlib import Path

    from jobs.monitoring import workspace

    folder = workspace.folder(Settings().state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    evidently = str(Path(sys.executable).with_name("evidently"))
    console.print(f"Evidently UI on http://{host}:{port} ({folder})")
    command = ["ui", "--workspace", str(folder), "--host", host, "--port", str(port)]
    os.execv(evidently, [evidently, *command])


@app.command()
def summary(start: str = typer.Option(...), end: str = typer.Option(...)) -> None:
    """Rows per layer per day and quarantined counts by reason, from the Delta tables."""
    from tooling import report

    report.print_summary(Settings(), _date(start), _date(end), console)


@app.command()
def maintenance(
    retention_hours: int = typer.Option(
        None, help="vacuum window in hours (default: NIGHTJAR_MAINTENANCE_RETENTION_HOURS)"
    ),
    quiet_hours: float = typer.Option(
        None,
        help="leave partitions written this recently uncompacted "
        "(default: NIGHTJAR_MAINTENANCE_QUIET_HOURS)",
    ),
    table: list[str] = typer.Option(  # noqa: B008 (typer's way)
        None, help="only this table (layer.name); repeatable"
    ),
) -> None:
    """Compact, vacuum and checkpoint every Delta table, recorded in ops.maintenance (what the
    nightjar_maintenance DAG runs)."""
    from jobs.lakehouse import maintenance as job

    settings = Settings()
    if retention_hours is not None and retention_hours < 24:
        raise typer.BadParameter(
            "at least 24 hours: younger unreferenced files may belong to a write in progress"
        )
    try:
        result = job.run(
            settings, tables=table or None, retention_hours=retention_hours, quiet_hours=quiet_hours
        )
    except job.MaintenanceFailed as failed:
        console.print(f"[red]{failed}[/red]")
        raise typer.Exit(1) from failed
    for name, figures in result["per_table"].items():
        before, after = figures["files"]
        console.print(
            f"{name:36s} {figures['status']:8s} files {before} -> {after}, "
            f"compacted {figures['compacted']}, vacuumed {figures['vacuumed']}"
        )
    console.print(
        f"[green]{result['tables']} tables[/green]: {result['files_before']} -> "
        f"{result['files_after']} files, {result['vacuumed_files']} vacuumed, "
        f"{result['conflicts']} conflicts (retried next run)"
    )


if __name__ == "__main__":
    app()
