"""Resuming from any checkpoint ends where the uninterrupted run ends.

A deterministic pipeline (source -> square -> batcher(batch_size) -> flaky(RETRY) ->
sink(time_interval), every batch failing once, so retry and recheck timers and policy
state appear in snapshots) runs once with an
in-memory checkpointer that keeps every snapshot. For a random one,
``JobState.from_dict(snapshot)`` resumed in a fresh Runtime must finish with the same
status, routine_states, shared_data, pending slot leftovers and shared_log (compared
as a multiset: branches of one run may log in either order) as the uninterrupted run.
A terminal snapshot cannot be resumed (ValueError).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from prop_flows import JOB_TIMEOUT, MemoryCheckpointer, running
from prop_routines import build_pipeline_flow

from routilux.job_state import JobState

#: Resolution of the relative position of the snapshot to resume.
POSITIONS = 1000


def outcome(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on whether the job was interrupted."""
    return {
        "status": snapshot["status"],
        "routine_states": snapshot["routine_states"],
        "shared_data": snapshot["shared_data"],
        "shared_log": Counter(repr(entry) for entry in snapshot["shared_log"]),
        "leftovers": snapshot["pending"]["slots"],
    }


def run_uninterrupted(n: int, batch: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    checkpointer = MemoryCheckpointer()
    with running({"pipeline": build_pipeline_flow(batch)}, checkpointer) as runtime:
        job = runtime.exec("pipeline", entry_params={"n": n})
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)
    assert job.status == "completed", job.error
    return job.to_dict(), checkpointer.for_job(job.job_id)


def resume(snapshot: dict[str, Any], batch: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    checkpointer = MemoryCheckpointer()
    with running({"pipeline": build_pipeline_flow(batch)}, checkpointer) as runtime:
        job = runtime.exec("pipeline", job_state=JobState.from_dict(snapshot))
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)
    return job.to_dict(), checkpointer.for_job(job.job_id)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 12), batch=st.integers(1, 4), position=st.integers(0, POSITIONS))
def test_resuming_any_snapshot_ends_like_the_uninterrupted_run(
    n: int, batch: int, position: int
) -> None:
    final, snapshots = run_uninterrupted(n, batch)
    # How many snapshots a run takes varies with thread timing, so the snapshot is
    # picked by relative position rather than drawn from a range that depends on it.
    index = position * (len(snapshots) - 1) // POSITIONS
    snapshot = snapshots[index]
    pending = snapshot["pending"]
    event(f"in flight: {sorted({a['routine_id'] for a in pending['activations']})}")
    event(f"timers: {sorted(t['kind'] for t in pending['timers'])}")

    if snapshot["status"] != "running":
        assert index == len(snapshots) - 1
        with pytest.raises(ValueError):
            resume(snapshot, batch)
        return
    resumed, checkpoints = resume(snapshot, batch)

    assert resumed["job_id"] == final["job_id"]
    assert outcome(resumed) == outcome(final)
    # Checkpoint numbers keep increasing across a resume, so stores can drop stale ones.
    assert checkpoints and checkpoints[0]["checkpoint_seq"] > snapshot["checkpoint_seq"]


def pick(snapshots: list[dict[str, Any]], position: int) -> dict[str, Any] | None:
    """The snapshot at relative ``position``, or None if it is terminal."""
    snapshot = snapshots[position * (len(snapshots) - 1) // POSITIONS]
    return snapshot if snapshot["status"] == "running" else None


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    batch=st.integers(1, 4),
    first=st.integers(0, POSITIONS),
    second=st.integers(0, POSITIONS),
)
def test_a_job_interrupted_twice_still_ends_like_the_uninterrupted_run(
    n: int, batch: int, first: int, second: int
) -> None:
    final, snapshots = run_uninterrupted(n, batch)
    snapshot = pick(snapshots, first)
    assume(snapshot is not None)
    _, after_first = resume(snapshot, batch)
    again = pick(after_first, second)
    assume(again is not None)

    resumed, _ = resume(again, batch)

    assert outcome(resumed) == outcome(final)
