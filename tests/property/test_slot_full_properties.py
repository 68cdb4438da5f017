"""A full slot never drops data silently.

One feeder emits ``count`` items, one per activation, into a slot that holds
SMALL_QUEUE items and whose routine never fires (its batch size is larger), so the
items pile up. Up to the limit every item is kept, in order, in the job state; the
emit that would overflow raises SlotQueueFullError inside the feeder's activation,
which goes through the feeder's error strategy (STOP fails the job, CONTINUE records
the error and goes on). Either way each item is kept exactly once or refused with a
recorded error.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prop_flows import JOB_TIMEOUT, running
from prop_routines import SMALL_QUEUE, SmallSlotSink, build_policy_flow

from routilux import ErrorHandler, ErrorStrategy
from routilux.activation_policies import batch_size_policy
from routilux.status import ExecutionStatus


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(0, 2 * SMALL_QUEUE),
    strategy=st.sampled_from([ErrorStrategy.STOP, ErrorStrategy.CONTINUE]),
)
def test_items_beyond_a_full_slot_are_refused_with_an_error_never_dropped(
    count: int, strategy: ErrorStrategy
) -> None:
    flow = build_policy_flow([count], batch_size_policy(SMALL_QUEUE + 1), SmallSlotSink())
    flow.get_routine("feeder0").set_error_handler(ErrorHandler(strategy))
    with running({"policy": flow}) as runtime:
        job = runtime.exec("policy")
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)

    snapshot = job.to_dict()
    kept = [item["value"][1] for item in snapshot["pending"]["slots"].get("sink", {}).get("s0", [])]
    errors = [e.type for e in job.errors]
    assert snapshot["shared_log"] == [], "the sink must never fire"
    if count <= SMALL_QUEUE:
        assert job.status is ExecutionStatus.COMPLETED and errors == []
        assert kept == list(range(count))
        return
    assert kept == list(range(SMALL_QUEUE)), "accepted items must stay, in order, once"
    assert errors == ["SlotQueueFullError"]
    expected = (
        ExecutionStatus.FAILED if strategy is ErrorStrategy.STOP else ExecutionStatus.COMPLETED
    )
    assert job.status is expected
