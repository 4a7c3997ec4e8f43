"""Errors that stop a run loudly, with a message naming the problem and where it is."""


class NightjarError(RuntimeError):
    """A run was refused because its input is bad; nothing was written."""


class LandingError(NightjarError):
    """The landing zone does not hold what the run needs."""


class StageSkipped(Exception):  # noqa: N818 (a signal, not an error)
    """The stage has nothing to do for this run (e.g. no champion model yet); the DAG marks
    the task skipped and the message says why."""


class StageWaiting(StageSkipped):
    """The stage needs what another run is producing (``score``: the first model, requested
    by an earlier night's retraining policy). The DAG reschedules the task, freeing its worker
    slot, until that arrives or its wait runs out; run in-process (the CLI) it is a skip.
    ``requested``: the request is made and pending; otherwise an earlier night's policy has yet
    to run and make it."""

    def __init__(self, message: str, *, requested: bool):
        super().__init__(message)
        self.requested = requested
