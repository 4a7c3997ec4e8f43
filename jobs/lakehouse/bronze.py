"""Bronze: the landed records as they came (raw text), plus ingestion metadata.

Nothing is dropped: a line that cannot be split into the expected columns is kept with its raw
text in ``_corrupt_record`` (silver quarantines it), and columns the contract does not know are
kept as JSON in ``_rescued_data``. A missing column, a missing file or an empty flights file stops
the run before anything is written.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import logging
import re
from collections import Counter

from pyarrow import fs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common import storage
from jobs.common.dates import span, takes_days
from jobs.common.delta import DeltaTables
from jobs.common.errors import LandingError
from jobs.common.settings import Settings
from jobs.lakehouse import frames
from jobs.lakehouse.landing import EXPORTS, landing_file, landing_root
from jobs.lakehouse.tables import BRONZE

log = logging.getLogger(__name__)

# Exports that can never be legitimately empty (a day always has flights; the dimension
# snapshots always have rows). Tomorrow's schedule is empty on the data's last day, and weather
# has a day with no observations.
MUST_HAVE_ROWS = {"flights", "planes", "airlines", "airports"}
# Leading bytes of files that are not UTF-8 text, and what they are.
NOT_TEXT = {
    b"\xff\xfe": "a UTF-16 byte-order mark",
    b"\xfe\xff": "a UTF-16 byte-order mark",
    b"\x1f\x8b": "gzip-compressed",
}
HEADER_MAX_BYTES = 64 * 1024
# A landed flight's CSV line is ~110 bytes: a file's size estimates its records.
BYTES_PER_RECORD = 100


def read_header(path: str) -> list[str]:
    """The file's column names, refusing a file that is not UTF-8 CSV text (naming the file and
    line 1) before Spark reads it: Spark would decode any bytes into replacement characters."""
    filesystem, file_path = storage.filesystem(path)
    info = filesystem.get_file_info(file_path)
    if info.type == fs.FileType.NotFound:
        raise LandingError(
            f"missing landing file {path}: the landing task for this date has not "
            "run or failed; nothing was written"
        )
    with filesystem.open_input_stream(file_path) as stream:
        head = stream.read(HEADER_MAX_BYTES)
    if not head.strip():
        raise LandingError(f"empty landing file {path}: no header and no records")

    def refuse(problem: str) -> LandingError:
        return LandingError(f"landing file {path} line 1: {problem}; nothing was written")

    if kind := NOT_TEXT.get(head[:2]):
        raise refuse(f"not UTF-8 CSV text ({kind}); land it as UTF-8")
    # A byte-order mark is harmless (Spark skips the header line); CR, LF and CRLF all end lines.
    line = re.split(rb"\r\n|\r|\n", head.removeprefix(codecs.BOM_UTF8), maxsplit=1)[0]
    if len(line) == HEADER_MAX_BYTES:
        raise refuse(f"no line break in the first {HEADER_MAX_BYTES} bytes: not a CSV header")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(
            f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); "
            "land it as UTF-8"
        ) from None
    header = next(csv.reader([text]))
    if repeated := sorted(c for c, n in Counter(header).items() if n > 1):
        raise refuse(f"duplicate column(s) {repeated} in the header {header}")
    return header


def read_export(spark: SparkSession, paths: list[str], export: str) -> DataFrame:
    """The export's files (one per day) as raw text with the contract's columns, the unexpected
    ones in ``_rescued_data``. Files are read together when their headers agree (one Spark job
    for an interval), else in groups of one header each."""
    expected = EXPORTS[export]
    by_header: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        header = read_header(path)
        missing = [c for c in expected if c not in header]
        if missing:
            raise LandingError(
                f"landing file {path} lacks expected column(s) {missing} "
                f"(header: {header}); nothing was written"
            )
        by_header.setdefault(tuple(header), []).append(path)
    parts = []
    for header, files in by_header.items():
        extra = [c for c in header if c not in expected]
        if extra:
            log.warning(
                "landing file(s) %s have unexpected column(s) %s: kept in _rescued_data",
                files,
                extra,
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
            .csv(files)
        )
        rescued = F.to_json(F.struct(*[F.col(c) for c in extra])) if extra else F.lit(None)
        parts.append(
            raw.select(
                *expected,
                rescued.alias("_rescued_data"),
                "_corrupt_record",
                F.col("_metadata.file_path").alias("_file"),
            )
        )
    return frames.concat(parts)


def collect(spark: SparkSession, settings: Settings, days: list[dt.date], export: str, run_id: str):
    """One export of every day with its ingestion metadata, read once (one Spark job, see
    ``frames``). A row's day is its landing folder's."""
    paths = [landing_file(settings, day, export) for day in days]
    frame = read_export(spark, paths, export)
    # <landing>/<day>/<export>.csv: the day names the folder, whatever URI the reader reports
    folder = F.regexp_extract("_file", r"/(\d{4}-\d{2}-\d{2})/[^/]+$", 1)
    data = frames.run_once(
        frame.select(
            *[c for c in frame.columns if c != "_file"],
            F.concat(
                F.lit(f"{landing_root(settings)}/"),
                folder,
                F.lit(f"/{export}.csv"),
            ).alias("_source_file"),
            F.lit(run_id).alias("_run_id"),
            F.to_date(folder).alias("_logical_date"),
        ),
        settings,
        expected_rows=sum(file_size(path) for path in paths) // BYTES_PER_RECORD,
    )
    if export in MUST_HAVE_ROWS:
        landed = frames.value_counts_by(data, ["_logical_date"])
        if empty := [day for day in days if not landed.get((day,))]:
            raise LandingError(
                f"empty landing file {', '.join(landing_file(settings, d, export) for d in empty)}"
                f": header only, no {export} records for {', '.join(map(str, empty))}; "
                "refusing to write an empty partition"
            )
    return data


def file_size(path: str) -> int:
    files, file_path = storage.filesystem(path)
    return files.get_file_info(file_path).size


@takes_days
def run(
    spark: SparkSession, tables: DeltaTables, settings: Settings, days: list[dt.date], run_id: str
) -> dict[str, int]:
    """Ingest every export of each day (one, or an interval's). Every file is read and checked
    before any table is written, so a bad file leaves all of bronze as it was."""
    data = {export: collect(spark, settings, days, export, run_id) for export in EXPORTS}
    for export, rows in data.items():
        tables.overwrite_partitions(BRONZE[export], rows, {"_logical_date": days}, run_id=run_id)
    counts = {export: frames.num_rows(rows) for export, rows in data.items()}
    log.info("bronze %s: %s", span(days), counts)
    return counts
