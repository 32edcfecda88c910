"""A file a long-running loop touches while it runs, so a container health check can tell a
live relay, scheduler or worker from a hung one: ``caselog alive relay`` (or the file's
age) answers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from infra.settings import private_file

COMPONENTS = ("relay", "scheduler", "worker")


def heartbeat_path(data_dir: Path, component: str) -> Path:
    return Path(data_dir) / f"{component}.heartbeat"


class Heartbeat:
    def __init__(self, path: Path | None, every: float = 10.0):
        self.path = path
        self.every = every
        self._last = float("-inf")

    def beat(self) -> None:
        if self.path is not None and time.monotonic() - self._last >= self.every:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_file(self.path)  # 0600 whatever the umask, like everything in the data dir
            os.utime(self.path)
            self._last = time.monotonic()


def age_seconds(path: Path) -> float | None:
    """Seconds since the last beat, or None when there never was one."""
    try:
        return time.time() - path.stat().st_mtime
    except (FileNotFoundError, NotADirectoryError):
        return None
