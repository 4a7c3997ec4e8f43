"""One writer per day: a stage claims the days it processes before it touches them.

Two runs of one day can meet whatever started them: a manual trigger with the ``date`` param
beside a backfill of the same day (a different logical date, so neither ``depends_on_past`` nor
the unique logical date keeps them apart), a history rebuild beside a daily run, a CLI
``nightjar stage`` beside Airflow. Their stages would write the same partitions at once, and a
re-land would replace a day's landing folder under the other run's bronze.

So every stage (``jobs.pipeline.run_stage``) holds a **claim** on each of its days while it runs:
a small JSON record in the lakehouse, ``_claims/<day>/<generation>.json``. The newest generation
is the claim. Taking it means creating the next generation's file *exclusively*, whole (a hard
link to a written file on a file system, ``If-None-Match: *`` on S3), so of two runs that find a
day free, one wins, and neither reads the other's half-written. The
holder renews its lease every ``LEASE / 3`` and marks the record released when the stage ends.
A claim is free when released, when its lease ran out (its process died: ``kill -9``, a lost
worker), or when it is the same run's (a retry of a task whose try died). Otherwise the second
run waits, saying which run holds the day, for up to ``day_claim_wait_minutes``, and then fails
naming it. Days are claimed in date order, so two runs over overlapping intervals cannot each
hold a day the other waits for.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from jobs.common import files
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=120)  # a claim whose holder stopped renewing is free after this
POLL_S = 2.0


class DayBusy(NightjarError):
    """Another run holds the day and did not let go within the wait."""


@dataclass
class Claim:
    day: str
    generation: int
    run_id: str
    stage: str
    holder: str  # host:pid
    acquired_at: str
    expires_at: str
    released_at: str | None = None

    def free_for(self, run_id: str, now: dt.datetime) -> bool:
        return (
            self.released_at is not None
            or dt.datetime.fromisoformat(self.expires_at) < now
            or self.run_id == run_id
        )

    def describe(self) -> str:
        return f"run {self.run_id} (stage {self.stage}, {self.holder}, since {self.acquired_at})"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Store:
    """Claim files on a file system or in a bucket: list, read, create exclusively, replace."""

    def __init__(self, settings: Settings):
        self.root = f"{settings.lakehouse.rstrip('/')}/_claims"
        self.s3 = self.root.startswith("s3://")

    def _path(self, day: str, generation: int | None = None) -> str:
        return f"{self.root}/{day}" + ("" if generation is None else f"/{generation:08d}.json")

    def newest(self, day: str) -> Claim | None:
        names = self._list(self._path(day))
        if not names:
            return None
        return Claim(**json.loads(self._read(self._path(day, max(names)))))

    def create(self, claim: Claim) -> bool:
        """Write ``claim`` unless its generation exists; whether it was written."""
        path, body = self._path(claim.day, claim.generation), json.dumps(asdict(claim))
        if self.s3:
            bucket, key = path.removeprefix("s3://").split("/", 1)
            from botocore.exceptions import ClientError

            try:
                self._client().put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("PreconditionFailed", "412"):
                    return False
                raise
            return True
        return files.create_whole(path, body)

    def replace(self, claim: Claim) -> None:
        """Rewrite the holder's own record (renewal, release)."""
        path, body = self._path(claim.day, claim.generation), json.dumps(asdict(claim))
        if self.s3:
            bucket, key = path.removeprefix("s3://").split("/", 1)
            self._client().put_object(Bucket=bucket, Key=key, Body=body)
            return
        files.replace_whole(path, body)

    def _list(self, folder: str) -> list[int]:
        if self.s3:
            bucket, prefix = folder.removeprefix("s3://").split("/", 1)
            pages = (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=f"{prefix}/")
            )
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
            names = [key.rsplit("/", 1)[1] for key in keys]
        else:
            names = os.listdir(folder) if os.path.isdir(folder) else []
        return [int(n.removesuffix(".json")) for n in names if n.endswith(".json")]

    def _read(self, path: str) -> str:
        if self.s3:
            bucket, key = path.removeprefix("s3://").split("/", 1)
            return self._client().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        with open(path) as f:
            return f.read()

    def _client(self):
        import boto3  # the AWS_* variables jobs.common.storage exports

        if not hasattr(self, "_s3_client"):
            self._s3_client = boto3.client("s3")
        return self._s3_client


def acquire(store: Store, day: str, run_id: str, stage: str, wait: dt.timedelta) -> Claim:
    """The day's claim for ``run_id``, once it is free; DayBusy after ``wait``."""
    deadline, announced = time.monotonic() + wait.total_seconds(), None
    while True:
        current = store.newest(day)
        moment = now()
        if current is None or current.free_for(run_id, moment):
            claim = Claim(
                day=day,
                generation=(current.generation + 1) if current else 1,
                run_id=run_id,
                stage=stage,
                holder=this_process(),
                acquired_at=moment.isoformat(),
                expires_at=(moment + LEASE).isoformat(),
            )
            if store.create(claim):
                return claim
            continue  # another run took this generation first: look again
        if time.monotonic() >= deadline:
            raise DayBusy(
                f"{stage} of {day} (run {run_id}) refused: the day is being processed by "
                f"{current.describe()}; waited {wait}. Let that run finish, or stop it."
            )
        if announced != current.generation:
            log.warning("%s of %s waits: the day is held by %s", stage, day, current.describe())
            announced = current.generation
        time.sleep(POLL_S)


def this_process() -> str:
    """How a claim names the process that holds it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def held_here(settings: Settings, day: dt.date) -> bool:
    """Whether this process holds ``day``'s claim now (inside :func:`claimed`): then no other
    run may be writing the day, and what another run left of it is a dead run's."""
    claim = Store(settings).newest(day.isoformat())
    return (
        claim is not None
        and claim.released_at is None
        and claim.holder == this_process()
        and dt.datetime.fromisoformat(claim.expires_at) >= now()
    )


@contextlib.contextmanager
def claimed(
    settings: Settings, days: Sequence[dt.date], run_id: str, stage: str
) -> Iterator[list[Claim]]:
    """Hold the claims of ``days`` (in date order) while the block runs, renewing them."""
    store = Store(settings)
    wait = dt.timedelta(minutes=settings.day_claim_wait_minutes)
    claims: list[Claim] = []
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE.total_seconds() / 3):
            for claim in claims:
                claim.expires_at = (now() + LEASE).isoformat()
                with contextlib.suppress(OSError):  # the next renewal tries again
                    store.replace(claim)

    renewer = threading.Thread(target=renew, name="day-claims", daemon=True)
    try:
        for day in sorted(days):
            claims.append(acquire(store, day.isoformat(), run_id, stage, wait))
        renewer.start()
        yield claims
    finally:
        stop.set()
        if renewer.is_alive():
            renewer.join()
        for claim in claims:
            claim.released_at = now().isoformat()
            store.replace(claim)
