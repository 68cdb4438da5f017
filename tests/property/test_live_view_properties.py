"""After a job finishes, what a user reads from its JobState equals its snapshot.

``job_state.shared_log`` / ``shared_data`` / ``routine_states`` are what callers read
after ``wait_for_completion``; ``to_dict()`` is what is checkpointed and what a resumed
copy of the job shows. DESIGN.md §3 makes state transitions exactly-once, so the two
must agree once the job is over, whichever error strategy ran.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prop_flows import JOB_TIMEOUT, running
from prop_routines import build_writer_flow

from routilux import ErrorStrategy


@settings(max_examples=30, deadline=None)
@given(
    strategy=st.sampled_from(list(ErrorStrategy)),
    failures=st.integers(0, 3),
)
def test_finished_job_reads_the_same_as_its_snapshot(
    strategy: ErrorStrategy, failures: int
) -> None:
    with running({"writer": build_writer_flow(strategy, failures)}) as runtime:
        job = runtime.exec("writer")
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)

    snapshot = job.to_dict()
    assert list(job.shared_log) == snapshot["shared_log"]
    assert dict(job.shared_data) == snapshot["shared_data"]
    assert job.routine_states == snapshot["routine_states"]
