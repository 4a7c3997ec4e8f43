"""`make bench-monitoring`: Evidently drift report time, one day and 1M rows x all features.

The frames are synthetic, shaped like the flight_disruption_v1 service (67 numeric features,
plus the probability): the reference is the training sample the monitor uses
(``Settings.reference_rows`` rows); the current side is one day of scored flights (~1,000) or
1,000,000 rows, with a shift in a third of the features so the report has drift to show. Each
size is timed for the measurement (``jobs.monitoring.drift.measure``: every per-column test and
the drift share) and for writing its HTML report, after a warm-up (Evidently's import is paid
once per process); peak memory is the process's high-water mark.
For comparison, the same report built from Evidently's stock ``ValueDrift`` (and its scipy
``wasserstein`` test) is timed on the same frames: ``measure`` differs only in the metric class and
the numeric test's implementation (``jobs.adapters.evidently_column_drift``), and both give the
same drift scores (checked here).
Target: <= 30 s for 1M rows. Saves .state/bench-monitoring/monitoring.json.
"""

from __future__ import annotations

import json
import resource
import time

from benchmarks.harness import isolate

STATE = isolate("monitoring", 25072)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobs.common.settings import Settings  # noqa: E402
from jobs.monitoring import drift  # noqa: E402

FEATURES = [f"f{i:02d}" for i in range(67)]
SIZES = {"one day": 1_000, "1M rows": 1_000_000}
console = Console(width=120)


def frame(rows: int, rng: np.random.Generator, shift: bool) -> pd.DataFrame:
    data = rng.normal(size=(rows, len(FEATURES))).astype("float64")
    if shift:
        data[:, ::3] += 0.5  # every third feature, half a standard deviation
    out = pd.DataFrame(data, columns=FEATURES)
    out["probability"] = rng.beta(2, 5, size=rows)
    return out


def stock_measure(reference: pd.DataFrame, current: pd.DataFrame, threshold: float) -> dict:
    """The baseline: one stock ``ValueDrift`` per column; returns the drift score per column."""
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift

    columns = [*FEATURES, "probability"]
    spec = drift.definition(reference, columns)
    report = Report(
        [ValueDrift(column=c, method="wasserstein", threshold=threshold) for c in columns]
    )
    snapshot = report.run(
        Dataset.from_pandas(current[columns], data_definition=spec),
        Dataset.from_pandas(reference[columns], data_definition=spec),
    )
    return {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"]}


def main() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    rng = np.random.default_rng(0)
    reference = frame(settings.reference_rows, rng, shift=False)
    # warm-up: Evidently's import (seconds) is paid once per task process, not per report
    drift.measure(reference.head(200), reference.tail(200), FEATURES, settings.drift_threshold)
    results = {}
    for name, rows in SIZES.items():
        current = frame(rows, rng, shift=True)
        t0 = time.perf_counter()
        measured = drift.measure(reference, current, FEATURES, settings.drift_threshold)
        measure_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        measured.snapshot.save_html(str(STATE / f"drift-{rows}.html"))
        html_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        stock = stock_measure(reference, current, settings.drift_threshold)
        stock_s = time.perf_counter() - t0
        # the same scores, to float rounding
        assert np.allclose([stock[f] for f in FEATURES], [measured.scores[f] for f in FEATURES])
        results[name] = {
            "rows": rows,
            "features": len(FEATURES),
            "measure_s": round(measure_s, 2),
            "html_s": round(html_s, 2),
            "total_s": round(measure_s + html_s, 2),
            "stock_measure_s": round(stock_s, 2),
            "drift_share": round(measured.share, 3),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
        console.print(f"{name}: {results[name]}")
    table = Table(title="Evidently drift report (67 features + prediction, reference 5,000 rows)")
    columns = ("size", "measure (s)", "HTML (s)", "total (s)", "stock ValueDrift (s)", "speed-up")
    for column in (*columns, "drift share", "peak RSS GiB"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['measure_s']:.2f}",
            f"{r['html_s']:.2f}",
            f"{r['total_s']:.2f}",
            f"{r['stock_measure_s']:.2f}",
            f"{r['stock_measure_s'] / r['measure_s']:.1f}x",
            f"{r['drift_share']:.3f}",
            f"{r['peak_rss_gib']:.2f}",
        )
    console.print(table)
    console.print("target: <= 30 s for 1M rows")
    (STATE / "monitoring.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
