"""An in-memory checkpointer that keeps every snapshot, for engine tests."""

from __future__ import annotations

import threading
from typing import Any


class MemoryCheckpointer:
    """Keeps every snapshot it is given, in order (a test twin of the SQLite store)."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def save(self, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self.snapshots.append(snapshot)

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.snapshots if s["job_id"] == job_id]
