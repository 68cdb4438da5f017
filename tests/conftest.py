"""Fixtures shared by every test: a private flow registry, a runtime, a memory checkpointer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from routilux import FlowRegistry, Runtime


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


@pytest.fixture
def registry() -> FlowRegistry:
    return FlowRegistry()


@pytest.fixture
def checkpointer() -> MemoryCheckpointer:
    return MemoryCheckpointer()


@pytest.fixture
def runtime(registry: FlowRegistry) -> Iterator[Runtime]:
    rt = Runtime(thread_pool_size=4, registry=registry)
    yield rt
    rt.shutdown(wait=True, timeout=10)
