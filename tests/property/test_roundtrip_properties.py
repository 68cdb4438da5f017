"""JobState serialization round trips: ``from_dict(to_dict(x))`` is ``x``.

Two sources of snapshots: arbitrary well-formed snapshot dicts (random JSON in every
free-form field), and JobStates changed through their public API outside a job.
Equality is on ``to_dict()``, which is everything a JobState persists.
"""

from __future__ import annotations

import json
import tempfile
from datetime import timezone
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from routilux.job_state import JobState
from routilux.status import ExecutionStatus

keys = st.text(min_size=1, max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
timestamps = st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.isoformat())
ids = st.text(alphabet="abcdefghij_0123456789", min_size=1, max_size=8)
data_points = st.lists(st.dictionaries(keys, json_values, max_size=3), max_size=3)

error_infos = st.fixed_dictionaries(
    {
        "type": ids,
        "message": st.text(max_size=20),
        "traceback": st.text(max_size=20),
        "routine_id": st.none() | ids,
        "attempt": st.integers(0, 5),
        "at": timestamps,
    }
)
activations = st.fixed_dictionaries(
    {
        "routine_id": ids,
        "data": st.dictionaries(ids, data_points, max_size=2),
        "policy_message": json_values,
        "attempt": st.integers(0, 5),
    }
)
timers = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just("retry"),
            "due": st.floats(0, 2e9),
            "routine_id": ids,
            "activation": activations,
        }
    ),
    st.fixed_dictionaries(
        {"kind": st.just("recheck"), "due": st.floats(0, 2e9), "routine_id": ids}
    ),
)
pendings = st.fixed_dictionaries(
    {
        "slots": st.dictionaries(ids, st.dictionaries(ids, data_points, max_size=2), max_size=2),
        "activations": st.lists(activations, max_size=3),
        "timers": st.lists(timers, max_size=2),
        "skipped_routines": st.lists(ids, max_size=2, unique=True).map(sorted),
        "policy_state": st.dictionaries(
            ids, st.dictionaries(keys, json_values, max_size=2), max_size=2
        ),
    }
)
history_records = st.fixed_dictionaries(
    {
        "routine_id": ids,
        "outcome": st.sampled_from(["ok", "error", "retry", "skipped", "discarded"]),
        "attempt": st.integers(0, 5),
        "started_at": st.floats(0, 2e9),
        "finished_at": st.floats(0, 2e9),
    }
)
snapshots = st.fixed_dictionaries(
    {
        "schema": st.just(1),
        "job_id": ids,
        "flow_id": ids,
        "flow_fingerprint": st.text(alphabet="0123456789abcdef", max_size=64),
        "status": st.sampled_from([s.value for s in ExecutionStatus]),
        "created_at": timestamps,
        "started_at": st.none() | timestamps,
        "completed_at": st.none() | timestamps,
        "error": st.none() | error_infos,
        "errors": st.lists(error_infos, max_size=3),
        "routine_states": st.dictionaries(
            ids, st.dictionaries(keys, json_values, max_size=3), max_size=3
        ),
        "shared_data": st.dictionaries(keys, json_values, max_size=4),
        "shared_log": st.lists(json_values, max_size=4),
        "execution_history": st.lists(history_records, max_size=3),
        "checkpoint_seq": st.integers(0, 10**6),
        "activation_count": st.integers(0, 10**6),
        "pending": pendings,
    }
)


@settings(max_examples=100, deadline=None)
@given(snapshot=snapshots)
def test_from_dict_of_a_snapshot_gives_the_same_snapshot_back(snapshot: dict[str, Any]) -> None:
    state = JobState.from_dict(snapshot)

    assert state.to_dict() == snapshot
    assert JobState.from_dict(state.to_dict()).to_dict() == snapshot
    assert json.loads(json.dumps(state.to_dict())) == snapshot


@settings(max_examples=50, deadline=None)
@given(snapshot=snapshots)
def test_save_then_load_gives_the_same_snapshot_back(snapshot: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.json"
        JobState.from_dict(snapshot).save(path)
        assert JobState.load(path).to_dict() == snapshot


@settings(max_examples=100, deadline=None)
@given(
    updates=st.lists(st.tuples(ids, st.dictionaries(keys, json_values, max_size=3)), max_size=4),
    shared=st.dictionaries(keys, json_values, max_size=4),
    log=st.lists(json_values, max_size=4),
)
def test_job_state_changed_through_its_api_round_trips(
    updates: list[tuple[str, dict[str, Any]]], shared: dict[str, Any], log: list[Any]
) -> None:
    state = JobState(flow_id="flow")
    for routine_id, update in updates:
        state.update_routine_state(routine_id, update)
    for key, value in shared.items():
        state.shared_data[key] = value
    state.shared_log.extend(log)

    again = JobState.from_dict(state.to_dict())

    assert again.to_dict() == state.to_dict()
    assert again.routine_states == state.routine_states
    assert dict(again.shared_data) == dict(state.shared_data)
    assert list(again.shared_log) == list(state.shared_log)
    assert again.status is state.status and again.job_id == state.job_id
