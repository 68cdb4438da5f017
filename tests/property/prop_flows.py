"""Helpers shared by the engine's property tests: a Runtime factory, a checkpointer.

The routines live in ``prop_dag`` (random DAGs) and ``prop_routines`` (the pipeline,
policy and live-view flows). They are module-level classes with no-argument
constructors, so snapshots taken with them can be resumed in a fresh Runtime;
per-node settings go through ``set_config``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from routilux import Flow, FlowRegistry, Runtime
from routilux.job_state import JobState

#: Worker threads of every Runtime in the property tests.
POOL_SIZE = 4
#: Seconds a property test waits for one job before calling it stuck.
JOB_TIMEOUT = 30.0
#: Seconds of every time_interval_policy in the property tests.
INTERVAL = 0.02


class MemoryCheckpointer:
    """In-memory checkpointer: keeps a JSON copy of every snapshot, per job, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: list[dict[str, Any]] = []

    def save(self, snapshot: dict[str, Any]) -> None:
        # The JSON round trip proves the snapshot is plain JSON and detaches it.
        copy = json.loads(json.dumps(snapshot))
        with self._lock:
            self._snapshots.append(copy)

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self._snapshots if s["job_id"] == job_id]


@contextmanager
def running(
    flows: dict[str, Flow], checkpointer: MemoryCheckpointer | None = None
) -> Iterator[Runtime]:
    """A Runtime with a private registry holding ``flows``; shut down on exit."""
    registry = FlowRegistry()
    for name, flow in flows.items():
        registry.register_by_name(name, flow)
    with Runtime(thread_pool_size=POOL_SIZE, checkpointer=checkpointer, registry=registry) as rt:
        yield rt


def log_entries(job: JobState) -> Counter[tuple[Any, ...]]:
    """The committed shared_log of ``job`` as a multiset of tuples."""
    return Counter(tuple(entry) for entry in job.to_dict()["shared_log"])
