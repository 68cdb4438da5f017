"""Flow descriptions round trip: ``Flow.from_dict(flow.to_dict())`` is the same flow.

Random DAG flows, with error handlers and activation policies on some nodes, are
described, sent through JSON and rebuilt. The rebuilt flow has the same description
and fingerprint (so it accepts the original's job snapshots) and runs a job to the
same result.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from prop_dag import DagSpec, build_dag_flow, dag_specs, expected_log
from prop_flows import JOB_TIMEOUT, log_entries, running

from routilux import Flow
from routilux.status import ExecutionStatus


@settings(max_examples=50, deadline=None)
@given(spec=dag_specs(max_nodes=5), data=st.data())
def test_rebuilt_flow_has_the_same_description_and_runs_the_same(
    spec: DagSpec, data: st.DataObject
) -> None:
    nodes = st.none() | st.integers(0, spec.size - 1)
    flow = build_dag_flow(spec, data.draw(nodes, label="retry"), data.draw(nodes, label="interval"))
    description = flow.to_dict()

    rebuilt = Flow.from_dict(json.loads(json.dumps(description)))

    assert rebuilt.to_dict() == description
    assert rebuilt.fingerprint() == flow.fingerprint()
    with running({"dag": rebuilt}) as runtime:
        job = runtime.exec("dag", entry_params={"token": "root"})
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)
    assert job.status is ExecutionStatus.COMPLETED, job.error
    assert log_entries(job) == expected_log(spec, "root")
