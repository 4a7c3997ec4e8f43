"""Synthetic days of any size, for scale runs: the real day's flights resampled and perturbed.

Day D with N flights is built from the real flights of the same calendar day in 2013:

* each block of as many flights as the real day holds is a fresh permutation of them, with the
  flight number moved by 10,000 per block, so every flight id (date, carrier, flight, origin)
  stays unique and silver keeps every row;
* departure and arrival delays move by a seeded integer in [-10, 10] minutes (cancelled flights
  stay cancelled);
* planes, carriers, airports and the day's weather are the real ones, so joins and trailing
  statistics see consistent entities; a plane simply flies more often.

``schedule.csv`` (D+1's timetable) is day D+1 generated the same way, so it lists exactly the
flights that day D+1's synthetic export will report. The same seed gives the same files.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.common.settings import Settings
from jobs.lakehouse import landing, source

BLOCK_STRIDE = 10_000  # real flight numbers stay below this


def flights(day: dt.date, n: int, seed: int, cache_dir=None) -> pa.Table:
    """``n`` synthetic flights of ``day`` (every column text, as the upstream exports them)."""
    real = pa.Table.from_pandas(
        source.table("flights", cache_dir, day)[source.FLIGHT_COLUMNS], preserve_index=False
    )
    if real.num_rows == 0:
        raise ValueError(f"no real flights on {day} to synthesize from")
    rng = np.random.default_rng([seed, day.toordinal()])
    blocks = -(-n // real.num_rows)
    order = np.concatenate([rng.permutation(real.num_rows) for _ in range(blocks)])[:n]
    block = np.arange(n) // real.num_rows
    rows = real.take(pa.array(order))

    flight = pc.cast(rows["flight"], pa.int64()).to_numpy() + block * BLOCK_STRIDE
    columns = {"flight": pa.array(flight.astype(str))}
    for name in ("dep_delay", "arr_delay"):
        columns[name] = _shift_minutes(rows[name], rng.integers(-10, 11, n))
    for name, values in columns.items():
        rows = rows.set_column(rows.schema.get_field_index(name), name, values)
    return rows


def _shift_minutes(text: pa.ChunkedArray, shift: np.ndarray) -> pa.Array:
    """Numeric text moved by ``shift``; "NA" (a cancelled flight) stays "NA"."""
    missing = pc.equal(text, "NA").to_numpy(zero_copy_only=False)
    values = pc.cast(pc.if_else(pc.equal(text, "NA"), "0", text), pa.int64()).to_numpy()
    moved = (values + shift).astype(str).astype(object)
    moved[missing] = "NA"
    return pa.array(moved, pa.string())


def export_day(day: dt.date, n: int, seed: int, cache_dir=None) -> dict[str, pa.Table]:
    """What :func:`landing.export_day` returns for a real day, with ``n`` flights."""
    tomorrow = day + dt.timedelta(days=1)
    real = landing.export_day(day, cache_dir)
    has_tomorrow = len(real["schedule"]) > 0
    return {
        **{k: pa.Table.from_pandas(v, preserve_index=False) for k, v in real.items()},
        "flights": flights(day, n, seed, cache_dir),
        "schedule": (
            flights(tomorrow, n, seed, cache_dir).select(source.SCHEDULE_COLUMNS)
            if has_tomorrow
            else pa.Table.from_pandas(real["schedule"], preserve_index=False)
        ),
    }


def land(settings: Settings, day: dt.date, n: int, seed: int = 7) -> dict[str, int]:
    """Land a synthetic day of ``n`` flights where the real day would land."""
    cache = settings.state_dir / "source_cache"
    return landing.publish(settings, day, export_day(day, n, seed, cache))
