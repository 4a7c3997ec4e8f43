"""Which process owns something it leaves behind while it works, and whether that process still
lives.

A stage killed with SIGKILL (``kill -9``, the OOM killer, a lost worker) cleans nothing up: a
landing leaves its staging folder, a training its MLflow run in status RUNNING. The next run of
the same step removes or closes such things, but only those whose owner is dead: a concurrent run
of the step may own one and still be writing it. So each is marked, when it is made, with its
owner: ``<pid>-<start>@<host>``, the process's id, its start time (clock ticks since the host
booted, from ``/proc``: a later process that got the same pid has another) and its host name.

Liveness is only known on the owner's own host; elsewhere :meth:`Owner.alive` says ``None``
(unknown) and the caller keeps its hands off unless something else proves the owner gone (a
landing holds its day's claim, ``jobs/common/day_claims.py``).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

_TEXT = re.compile(r"(\d+)-(\d+)@(.+)")
_PROC = Path("/proc/self/stat")


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: int  # clock ticks after boot; 0: unknown (no /proc)

    def __str__(self) -> str:
        return f"{self.pid}-{self.started}@{self.host}"

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        """The owner ``str(owner)`` wrote; None for anything else (an older name, no tag)."""
        match = _TEXT.fullmatch(text or "")
        if match is None:
            return None
        return cls(host=match.group(3), pid=int(match.group(1)), started=int(match.group(2)))

    def alive(self) -> bool | None:
        """Whether the process still runs: True, False, or None where it cannot be known (it
        ran on another host). A process that has exited and waits to be reaped (a zombie) is
        dead: it holds nothing any more."""
        if self.host != socket.gethostname():
            return None
        started = start_time(self.pid)
        if started is None:
            return False
        return not (self.started and started and started != self.started)


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot; 0 where the system has no
    ``/proc`` to say), or None: no such process, or a zombie."""
    if not _PROC.exists():  # no /proc here: only whether the pid exists can be known
        return 0 if _exists(pid) else None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # "pid (command) state ppid ...": the command may hold spaces and parentheses
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped; dead
        return None
    return int(fields[19])  # field 22 of proc(5): starttime


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current() -> Owner:
    """This process, as an owner."""
    pid = os.getpid()
    return Owner(host=socket.gethostname(), pid=pid, started=start_time(pid) or 0)
