"""The training window and its time-based split (never shuffled across time)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from jobs.common.errors import NightjarError
from jobs.common.settings import Settings
from jobs.features.training import TrainingSet

LABEL = "is_disrupted"


@dataclass(frozen=True)
class Window:
    """Labeled flight dates ``[start, end]``: train, then validation, then the most recent
    ``test_days`` as the held-out test window."""

    start: dt.date
    end: dt.date
    validation_days: int
    test_days: int

    @classmethod
    def ending(cls, end: dt.date, days: int, settings: Settings) -> Window:
        if days < settings.validation_days + settings.test_days + 1:
            raise NightjarError(
                f"a {days}-day window leaves no training days after {settings.validation_days} "
                f"validation and {settings.test_days} test days"
            )
        return cls(
            end - dt.timedelta(days=days - 1), end, settings.validation_days, settings.test_days
        )

    @property
    def test_start(self) -> dt.date:
        return self.end - dt.timedelta(days=self.test_days - 1)

    @property
    def validation_start(self) -> dt.date:
        return self.test_start - dt.timedelta(days=self.validation_days)

    def as_params(self) -> dict[str, str]:
        return {
            "window_start": self.start.isoformat(),
            "window_end": self.end.isoformat(),
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
        }


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def split(data: TrainingSet, window: Window) -> Split:
    frame = data.frame
    dates = pd.to_datetime(frame["flight_date"]).dt.date
    parts = Split(
        train=frame[dates < window.validation_start],
        validation=frame[(dates >= window.validation_start) & (dates < window.test_start)],
        test=frame[dates >= window.test_start],
    )
    for name, part in vars(parts).items():
        if part.empty or part[LABEL].nunique() < 2:
            raise NightjarError(
                f"the {name} split of {window.start}..{window.end} has {len(part)} labeled "
                "flights and needs both classes: choose a longer window or one with data"
            )
    return parts
