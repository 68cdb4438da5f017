"""A job completes only when it is idle.

Random DAGs, with one random node failing every first attempt under RETRY and one
under a short time_interval_policy, so that retry and recheck timers are part of the
pending work. The checkpointer sees every state change
of the job; the properties are checked on that sequence:

* ``checkpoint_seq`` goes up by one per snapshot;
* every snapshot before the last is ``running`` and holds work (an activation in
  flight or a timer), because a running job with no work would already be finished;
* the last snapshot is ``completed`` with no activation and no timer left;
* by the time ``wait_for_completion`` returns, every predicted delivery has happened
  and nothing runs afterwards.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from prop_dag import DagSpec, build_dag_flow, dag_specs, expected_log
from prop_flows import JOB_TIMEOUT, MemoryCheckpointer, log_entries, running

from routilux.status import ExecutionStatus


def has_work(snapshot: dict[str, Any]) -> bool:
    pending = snapshot["pending"]
    return bool(pending["activations"] or pending["timers"])


def check_snapshots(snapshots: list[dict[str, Any]]) -> None:
    seqs = [s["checkpoint_seq"] for s in snapshots]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    *before, last = snapshots
    for snapshot in before:
        assert snapshot["status"] == "running", snapshot["status"]
        assert has_work(snapshot), f"running snapshot {snapshot['checkpoint_seq']} has no work"
    assert last["status"] == "completed"
    assert not has_work(last), last["pending"]


@settings(max_examples=60, deadline=None)
@given(spec=dag_specs(max_nodes=5), data=st.data())
def test_job_completes_only_after_every_scheduled_activation_ran(
    spec: DagSpec, data: st.DataObject
) -> None:
    nodes = st.none() | st.integers(0, spec.size - 1)
    retry_node = data.draw(nodes, label="retry_node")
    interval_node = data.draw(nodes, label="interval_node")
    flow = build_dag_flow(spec, retry_node, interval_node)
    checkpointer = MemoryCheckpointer()
    with running({"dag": flow}, checkpointer) as runtime:
        job = runtime.exec("dag", entry_params={"token": "root"})
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)
        at_completion = list(job.shared_log)

    assert job.status is ExecutionStatus.COMPLETED, job.error
    assert log_entries(job) == expected_log(spec, "root")
    assert Counter(tuple(entry) for entry in at_completion) == expected_log(spec, "root")
    # Nothing ran after the job was declared complete (the runtime drained its threads).
    assert list(job.shared_log) == at_completion
    snapshots = checkpointer.for_job(job.job_id)
    check_snapshots(snapshots)
    for kind in sorted({t["kind"] for s in snapshots for t in s["pending"]["timers"]}):
        event(f"timer seen: {kind}")
