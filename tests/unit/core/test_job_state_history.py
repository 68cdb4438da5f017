"""JobState.recent_history: the newest entries of the execution history, cheaply."""

from __future__ import annotations

from typing import Any

from routilux.job_state import HISTORY_LIMIT, JobState


def commit(state: JobState, n: int) -> None:
    for i in range(n):
        record: dict[str, Any] = {"routine_id": f"r{i}", "outcome": "ok"}
        state._commit(None, record)


def test_recent_history_is_the_newest_entries_oldest_first() -> None:
    state = JobState(flow_id="f")
    assert state.recent_history(3) == []
    commit(state, 5)
    assert [e["routine_id"] for e in state.recent_history(2)] == ["r3", "r4"]
    assert state.recent_history(10) == state.execution_history
    assert state.recent_history(0) == [] and state.recent_history(-1) == []


def test_recent_history_stays_within_the_bounded_history() -> None:
    state = JobState(flow_id="f")
    commit(state, HISTORY_LIMIT + 7)
    assert state.activation_count == HISTORY_LIMIT + 7
    assert len(state.recent_history(HISTORY_LIMIT + 7)) == HISTORY_LIMIT
    assert state.recent_history(1)[0]["routine_id"] == f"r{HISTORY_LIMIT + 6}"
