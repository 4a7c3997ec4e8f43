"""Bronze: the landed records as they came (raw text), plus ingestion metadata.

Nothing is dropped: a line that cannot be split into the expected columns is kept with its raw
text in ``_corrupt_record`` (silver quarantines it), and columns the contract does not know are
kept as JSON in ``_rescued_data``. A missing column, a missing file or an empty flights file stops
the run before anything is written.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging

from pyarrow import fs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common import storage
from jobs.common.delta import DeltaTables
from jobs.common.errors import LandingError
from jobs.common.settings import Settings
from jobs.lakehouse import frames
from jobs.lakehouse.landing import EXPORTS, landing_file
from jobs.lakehouse.tables import BRONZE

log = logging.getLogger(__name__)

# Exports that can never be legitimately empty (a day always has flights; the dimension
# snapshots always have rows). Tomorrow's schedule is empty on the data's last day, and weather
# has a day with no observations.
MUST_HAVE_ROWS = {"flights", "planes", "airlines", "airports"}
# A landed flight's CSV line is ~110 bytes: a file's size estimates its records.
BYTES_PER_RECORD = 100


def read_header(path: str) -> list[str]:
    filesystem, file_path = storage.filesystem(path)
    info = filesystem.get_file_info(file_path)
    if info.type == fs.FileType.NotFound:
        raise LandingError(
            f"missing landing file {path}: the landing task for this date has not "
            "run or failed; nothing was written"
        )
    with filesystem.open_input_stream(file_path) as stream:
        first_line = io.TextIOWrapper(stream, encoding="utf-8").readline()
    if not first_line.strip():
        raise LandingError(f"empty landing file {path}: no header and no records")
    return next(csv.reader([first_line]))


def read_export(spark: SparkSession, path: str, export: str) -> tuple[DataFrame, list[str]]:
    """The export as raw text with the contract's columns; returns (frame, unexpected columns)."""
    expected = EXPORTS[export]
    header = read_header(path)
    missing = [c for c in expected if c not in header]
    if missing:
        raise LandingError(
            f"landing file {path} lacks expected column(s) {missing} "
            f"(header: {header}); nothing was written"
        )
    extra = [c for c in header if c not in expected]
    if extra:
        log.warning(
            "landing file %s has unexpected column(s) %s: kept in _rescued_data", path, extra
        )
    schema = T.StructType(
        [T.StructField(c, T.StringType()) for c in header]
        + [T.StructField("_corrupt_record", T.StringType())]
    )
    raw = (
        spark.read.schema(schema)
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record")
        .csv(path)
    )
    rescued = F.to_json(F.struct(*[F.col(c) for c in extra])) if extra else F.lit(None)
    return raw.select(*expected, rescued.alias("_rescued_data"), "_corrupt_record"), extra


def collect(spark: SparkSession, settings: Settings, day: dt.date, export: str, run_id: str):
    """One export with its ingestion metadata, read once (one Spark job, see ``frames``)."""
    path = str(landing_file(settings, day, export))
    frame, _ = read_export(spark, path, export)
    files, file_path = storage.filesystem(path)
    data = frames.run_once(
        frame.select(
            "*",
            F.lit(path).alias("_source_file"),
            F.lit(run_id).alias("_run_id"),
            F.lit(day).alias("_logical_date"),
        ),
        settings,
        expected_rows=files.get_file_info(file_path).size // BYTES_PER_RECORD,
    )
    if export in MUST_HAVE_ROWS and frames.num_rows(data) == 0:
        raise LandingError(
            f"empty landing file {path}: header only, no {export} records for "
            f"{day}; refusing to write an empty partition"
        )
    return data


def run(
    spark: SparkSession, tables: DeltaTables, settings: Settings, day: dt.date, run_id: str
) -> dict[str, int]:
    """Ingest every export of ``day``. Every file is read and checked before any table is
    written, so a bad file leaves all of bronze as it was."""
    data = {export: collect(spark, settings, day, export, run_id) for export in EXPORTS}
    for export, rows in data.items():
        tables.overwrite_partitions(BRONZE[export], rows, {"_logical_date": [day]}, run_id=run_id)
    counts = {export: frames.num_rows(rows) for export, rows in data.items()}
    log.info("bronze %s: %s", day, counts)
    return counts
