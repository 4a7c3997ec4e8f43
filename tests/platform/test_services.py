"""Stopping a service: SIGTERM, repeated for a process that missed it, SIGKILL as a last resort."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from jobs.common.settings import Settings
from jobs.platform import services

# Like an Airflow component whose SystemExit Python ignored: the first SIGTERM is lost.
MISSES_THE_FIRST_SIGTERM = textwrap.dedent(
    """
    import signal, sys, time
    seen = []
    def handler(signum, frame):
        seen.append(signum)
        if len(seen) > 1:
            sys.exit(0)
    signal.signal(signal.SIGTERM, handler)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def test_a_service_that_misses_sigterm_gets_it_again_before_the_kill(tmp_path, monkeypatch):
    settings = Settings(state_dir=tmp_path)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", MISSES_THE_FIRST_SIGTERM],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().strip() == "ready"
    (settings.run_dir / "fake.pid").write_text(str(process.pid))
    monkeypatch.setitem(services._children, "fake", process)  # started here: reaped by stop
    began = time.monotonic()
    assert services.stop(settings, "fake", timeout=30)
    took = time.monotonic() - began
    assert process.wait(timeout=5) == 0  # its own exit on the second SIGTERM, not SIGKILL
    assert services.TERM_REPEAT_S <= took < 30
    assert services.pid_of(settings, "fake") is None
