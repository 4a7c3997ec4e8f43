"""jobs/common/owner.py: whether the process that left something behind still runs."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time

from jobs.common import owner


def test_a_process_is_alive_until_it_dies_and_its_pid_alone_proves_nothing():
    me = owner.current()
    assert owner.Owner.parse(str(me)) == me and me.alive() is True
    # the same pid with another start time: a later process that got the pid, not the owner
    assert dataclasses.replace(me, started=me.started + 1).alive() is False
    assert dataclasses.replace(me, host=f"not-{socket.gethostname()}").alive() is None
    assert owner.Owner.parse("a1b2c3d4e5") is None and owner.Owner.parse(None) is None

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = owner.start_time(child.pid)
    assert started
    theirs = owner.Owner(socket.gethostname(), child.pid, started)
    assert theirs.alive() is True
    child.kill()
    deadline = time.monotonic() + 10  # killed, not yet reaped: a zombie is dead
    while theirs.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert theirs.alive() is False
    child.wait()
    assert theirs.alive() is False
