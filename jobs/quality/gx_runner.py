"""Run a versioned Great Expectations suite on one day's data and keep every result.

Suites are JSON files under ``expectations/`` (the GX 1.x suite format). Each expectation names
its severity in ``meta.severity``: ``critical`` failures stop the run (nothing downstream is
built on bad data), ``warning`` failures are recorded and the run continues. Results go to the
``quality.results`` Delta table and into GX Data Docs under ``<state_dir>/quality/data_docs``.

The GX context is ephemeral (suites come from the repository, not from a GX project folder),
with validation results and Data Docs on the filesystem, so parallel backfill runs never
rewrite a shared config file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame as SparkDataFrame

from jobs.common.errors import NightjarError
from jobs.common.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

SUITES_DIR = PROJECT_ROOT / "expectations"
SEVERITIES = ("critical", "warning")
RESULT_FORMAT = "BASIC"


class QualityGateError(NightjarError):
    """Critical expectations failed; the run stops before anything downstream."""


@dataclass
class ValidationOutcome:
    suite: str
    day: dt.date | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    docs_page: Path | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["success"]]

    def failed_with(self, severity: str) -> list[dict[str, Any]]:
        return [r for r in self.failed if r["severity"] == severity]


def suite_path(name: str) -> Path:
    return SUITES_DIR / f"{name}.json"


def load_suite(name: str) -> dict[str, Any]:
    """The suite's JSON, checked: GX silently drops expectations it cannot parse."""
    path = suite_path(name)
    if not path.exists():
        raise NightjarError(f"no expectation suite {name!r}: {path} does not exist")
    spec = json.loads(path.read_text())
    for i, expectation in enumerate(spec.get("expectations", [])):
        severity = expectation.get("meta", {}).get("severity")
        if severity not in SEVERITIES:
            raise NightjarError(
                f"{path}: expectation {i} ({expectation.get('type')}) has severity "
                f"{severity!r}; expected one of {SEVERITIES}"
            )
    return spec


def _cached_view(root: Path) -> dict[str, str]:
    return {
        "module_name": "jobs.adapters.gx_docs_view",
        "class_name": "CachedJinjaPageView",
        "cache_dir": str(root / "jinja_cache"),
    }


def _context(settings: Settings):
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, ProgressBarsConfig

    from jobs.adapters import gx_expectation_kwargs

    gx_expectation_kwargs.install()  # kwargs read once per call: see the adapter

    root = settings.state_dir / "quality"

    def filesystem(sub: str) -> dict:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(root / sub)}

    config = DataContextConfig(
        stores={
            "expectations_store": {"class_name": "ExpectationsStore"},
            "validation_results_store": {
                "class_name": "ValidationResultsStore",
                "store_backend": filesystem("validations"),
            },
            "checkpoint_store": {"class_name": "CheckpointStore"},
            "validation_definition_store": {"class_name": "ValidationDefinitionStore"},
        },
        expectations_store_name="expectations_store",
        validation_results_store_name="validation_results_store",
        checkpoint_store_name="checkpoint_store",
        data_docs_sites={
            "local_site": {
                "class_name": "SiteBuilder",
                "store_backend": filesystem("data_docs"),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                # pages rendered with templates compiled once, cached on disk (gx_docs_view)
                "site_section_builders": {
                    section: {"view": _cached_view(root)}
                    for section in ("expectations", "validations")
                },
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),  # a bar per metric floods task logs
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def validate(
    frame: pd.DataFrame | SparkDataFrame,
    suite_name: str,
    layer: str,
    day: dt.date,
    parameters: dict[str, Any],
    settings: Settings,
    run_id: str,
) -> ValidationOutcome:
    """Validate ``frame`` against ``expectations/<suite_name>.json``; never raises on failures
    (see :func:`enforce`)."""
    return validate_days({day: frame}, suite_name, layer, {day: parameters}, settings, run_id)[0]


def validate_days(
    frames: dict[dt.date, pd.DataFrame | SparkDataFrame],
    suite_name: str,
    layer: str,
    parameters: dict[dt.date, dict[str, Any]],
    settings: Settings,
    run_id: str,
) -> list[ValidationOutcome]:
    """Validate each day's frame against the suite with that day's parameters: one validation
    result (and Data Docs page) per day, through one GX context and validation definition."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    spec = load_suite(suite_name)
    context = _context(settings)
    suite = context.suites.add(gx.ExpectationSuite(**spec))
    if len(suite.expectations) != len(spec["expectations"]):
        raise NightjarError(
            f"{suite_path(suite_name)}: GX accepted {len(suite.expectations)} of "
            f"{len(spec['expectations'])} expectations; see the log for the rest"
        )
    pandas = all(isinstance(frame, pd.DataFrame) for frame in frames.values())
    source = (
        context.data_sources.add_pandas("nightjar")
        if pandas
        else context.data_sources.add_spark("nightjar")  # a Spark DataFrame: GX's Spark engine
    )
    batch_definition = source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe(
        "day"
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
    )
    # The definition runs each day itself, without a Checkpoint around it: a Checkpoint adds no
    # action here (the pages are built below) and checks its own and the definition's
    # freshness against the store once more per day: 27% of a month's check_silver CPU.
    outcomes, keys = [], []
    for day, frame in frames.items():
        run_time = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        gx_run = RunIdentifier(run_name=f"{day}-{run_id}", run_time=run_time)
        suite_result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters[day],
            # What quality.results keeps (observed values, unexpected counts and the first
            # examples) is all in BASIC; SUMMARY adds counts of each unexpected value, which
            # nothing reads: 1.22x the CPU on a month of check_silver (`make bench-quality`).
            result_format=RESULT_FORMAT,
            run_id=gx_run,
        )
        keys.append(
            ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
                run_id=gx_run,
                batch_identifier=suite_result.batch_id,
            )
        )
        outcomes.append(_outcome(suite_name, layer, day, run_id, suite_result))
    # Render these validations' pages only: the site index lists every stored validation, so
    # rebuilding it on each run would make a day's gate slower as history grows. The index is
    # rebuilt by `make quality-docs`.
    context.build_data_docs(resource_identifiers=keys, build_index=False)
    for key, outcome in zip(keys, outcomes, strict=True):
        urls = context.get_docs_sites_urls(resource_identifier=key)
        if urls and urls[0].get("site_url"):
            page = urllib.parse.unquote(urls[0]["site_url"].removeprefix("file://"))
            outcome.docs_page = Path(page)
    return outcomes


def _outcome(suite_name: str, layer: str, day: dt.date, run_id: str, suite_result):
    outcome = ValidationOutcome(suite=suite_name, day=day)
    for r in suite_result.results:
        config = r.expectation_config
        details = r.result or {}
        observed = details.get("observed_value")
        mismatched = (details.get("details") or {}).get("mismatched")
        if mismatched:  # column-set checks: what is missing or unexpected, not every column
            observed = mismatched
        elif observed is None and "unexpected_count" in details:
            observed = {
                "unexpected_count": details["unexpected_count"],
                "unexpected_percent": details.get("unexpected_percent"),
                "examples": details.get("partial_unexpected_list", [])[:5],
            }
        outcome.rows.append(
            {
                "logical_date": day,
                "layer": layer,
                "suite": suite_name,
                "expectation": config.type,
                "column": config.kwargs.get("column"),
                "kwargs": json.dumps(
                    {k: v for k, v in config.kwargs.items() if k != "batch_id"}, default=str
                ),
                "severity": config.meta.get("severity"),
                "success": bool(r.success),
                "observed_value": json.dumps(observed, default=str),
                "exception": (r.exception_info or {}).get("exception_message"),
                "_run_id": run_id,
            }
        )
    return outcome


def enforce(*outcomes: ValidationOutcome) -> None:
    """Log warnings; raise naming every failed critical expectation and what was observed, for
    each day that failed (the first few days in full)."""
    for outcome in outcomes:
        for row in outcome.failed_with("warning"):
            log.warning(
                "quality warning in %s on %s: %s(%s) observed %s",
                outcome.suite,
                outcome.day,
                row["expectation"],
                row["column"] or "",
                row["observed_value"],
            )
    failed = [o for o in outcomes if o.failed_with("critical")]
    if not failed:
        return
    shown = MAX_DAYS_SHOWN
    parts = [_critical_message(o) for o in failed[:shown]]
    if len(failed) > 1:
        days = sorted({str(o.day) for o in failed})
        parts.insert(0, f"critical failures on {len(days)} day(s): {', '.join(days)}")
    if len(failed) > shown:
        parts.append(f"... and {len(failed) - shown} more; every result is in quality.results")
    raise QualityGateError("\n".join(parts))


MAX_DAYS_SHOWN = 5


def _critical_message(outcome: ValidationOutcome) -> str:
    critical = outcome.failed_with("critical")
    lines = [
        f"  - {r['expectation']}({r['column'] or ''}) {r['kwargs']}: observed "
        f"{r['observed_value']}" + (f" [error: {r['exception']}]" if r["exception"] else "")
        for r in critical
    ]
    return (
        f"quality gate {outcome.suite} on {outcome.day}: {len(critical)} critical "
        "expectation(s) failed; nothing downstream runs:\n"
        + "\n".join(lines)
        + (f"\nData Docs: {outcome.docs_page}" if outcome.docs_page else "")
    )


def rebuild_docs(settings: Settings) -> Path:
    """Rebuild the Data Docs site from every stored validation result; returns index.html."""
    context = _context(settings)
    context.build_data_docs()
    return settings.state_dir / "quality" / "data_docs" / "index.html"
