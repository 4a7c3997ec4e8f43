"""Small files other processes read while they are written: a day's claim, a service's pid file,
a generated secret. Each appears whole, never empty or half-written: it is written under a name
private to this process and thread, then moved into place (``replace_whole``) or hard-linked to
its name (``create_whole``: the link is the exclusive create). A file created with ``O_EXCL``
and then written is empty in between, and a reader racing it got nothing (a run reading a day's
claim at that moment died of it)."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _private(path: Path, body: str, mode: int) -> Path:
    """``body`` in a new file beside ``path`` with permissions ``mode`` from its creation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as file:
        file.write(body)
    return private


def create_whole(path: str | Path, body: str, mode: int = 0o644) -> bool:
    """Create ``path`` holding ``body`` unless it exists; whether this call created it."""
    path = Path(path)
    private = _private(path, body, mode)
    try:
        os.link(private, path)
    except FileExistsError:
        return False
    finally:
        private.unlink()
    return True


def replace_whole(path: str | Path, body: str, mode: int = 0o644) -> None:
    """Write ``path`` to hold ``body``, replacing what it held."""
    path = Path(path)
    os.replace(_private(path, body, mode), path)
