"""Every checkpoint is consistent: no half activation, no item lost or doubled.

In a random DAG each node logs the data points it processed and emits their
children in the same activation. A checkpoint that showed an activation's log
entries without its emits (or the reverse) would break the balance checked here:
the deliveries a snapshot knows of (logged, waiting in a slot, in flight, or held
by a retry timer) are exactly the entry data point plus the children of every data
point the snapshot has logged. It must hold for every snapshot the checkpointer
receives, including those taken while retries and time-interval rechecks wait.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prop_dag import DagSpec, accounted, build_dag_flow, caused, dag_specs
from prop_flows import JOB_TIMEOUT, MemoryCheckpointer, running

from routilux.status import ExecutionStatus


@settings(max_examples=100, deadline=None)
@given(spec=dag_specs(max_nodes=5), data=st.data())
def test_every_checkpoint_accounts_for_each_delivery_exactly_once(
    spec: DagSpec, data: st.DataObject
) -> None:
    nodes = st.none() | st.integers(0, spec.size - 1)
    flow = build_dag_flow(spec, data.draw(nodes, label="retry"), data.draw(nodes, label="interval"))
    checkpointer = MemoryCheckpointer()
    with running({"dag": flow}, checkpointer) as runtime:
        job = runtime.exec("dag", entry_params={"token": "root"})
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)

    assert job.status is ExecutionStatus.COMPLETED, job.error
    for snapshot in checkpointer.for_job(job.job_id):
        assert accounted(snapshot) == caused(spec, snapshot, "root"), snapshot["checkpoint_seq"]
