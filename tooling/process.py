"""Which processes are a service's, read from /proc (Linux), so that only those are signalled.

A pid alone names no process: once one exits, the kernel hands its number to the next. A process
is named by its pid and its start time (clock ticks after boot, field 22 of /proc/<pid>/stat)
within one boot. Each service leads a session of its own (``start_new_session``, so its pid is
also its session and process group id). What it starts stays in that session (Airflow gives each
task a process group of its own, in the same session) or descends from a process that does. The
session outlives its leader: a crashed scheduler's LocalExecutor workers and log server keep it,
and are found by it. The kernel does not reuse a pid while a session or group bears it, so a
session id whose leader was ours and whose members started after it is ours.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple


class Proc(NamedTuple):
    pid: int
    start: int  # clock ticks after boot
    ppid: int = 0
    sid: int = 0


def read(pid: int, exited: bool = False) -> Proc | None:
    """The process ``pid``, if it runs; one that has exited but is not yet reaped (a zombie)
    only with ``exited``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # after the command name, in parentheses that it may itself contain
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X") and not exited:
        return None
    return Proc(pid, int(fields[19]), ppid=int(fields[1]), sid=int(fields[3]))


@functools.cache
def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def started_at(proc: Proc) -> float:
    """When ``proc`` started, in seconds since the epoch (to the second, as the boot time)."""
    lines = Path("/proc/stat").read_text().splitlines()
    boot = int(next(line for line in lines if line.startswith("btime ")).split()[1])
    return boot + proc.start / os.sysconf("SC_CLK_TCK")


def alive(proc: Proc) -> bool:
    """Whether ``proc`` still runs under its pid (not exited, its pid not another's now)."""
    now = read(proc.pid)
    return now is not None and now.start == proc.start


def started_by(leader: Proc) -> list[Proc]:
    """The running processes of ``leader``'s session (the leader too, while it runs) and their
    descendants in sessions of their own. Nothing once the leader's pid is another process's: the
    session then ended, and the number is someone else's session id."""
    holder = read(leader.pid)
    if holder is not None and holder.start != leader.start:
        return []
    everything = (read(int(entry)) for entry in os.listdir("/proc") if entry.isdigit())
    ours: dict[int, Proc] = {}
    for proc in sorted(filter(None, everything), key=lambda p: (p.start, p.pid)):  # parents first
        if proc.start >= leader.start and (proc.sid == leader.pid or proc.ppid in ours):
            ours[proc.pid] = proc
    ours.pop(os.getpid(), None)  # never the caller (a task that stops its own scheduler)
    return list(ours.values())


def send(procs: Iterable[Proc], signum: int) -> None:
    """Signal each process whose pid still names it: a pidfd holds the process while it is
    checked, so its number cannot pass to another in between."""
    for proc in procs:
        try:
            fd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            continue
        try:
            if alive(proc):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    signal.pidfd_send_signal(fd, signum)
        finally:
            os.close(fd)
