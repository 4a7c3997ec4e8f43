"""Errors that stop a run loudly, with a message naming the problem and where it is."""


class NightjarError(RuntimeError):
    """A run was refused because its input is bad; nothing was written."""


class LandingError(NightjarError):
    """The landing zone does not hold what the run needs."""


class StageSkipped(Exception):  # noqa: N818 (a signal, not an error)
    """The stage has nothing to do for this run (e.g. no champion model yet); the DAG marks
    the task skipped and the message says why."""
