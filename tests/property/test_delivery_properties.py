"""Delivery and isolation properties of the engine on random DAGs.

* Every emit reaches every connected slot of the same job exactly once: each node's
  log is exactly the multiset that the DAG's paths and fanouts predict.
* Concurrent jobs of one Flow never see each other's data: every token carries its
  job's root, and each job's log matches the prediction for its own root only. The
  jobs are started one after another or all at once from several threads.
"""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from prop_dag import DagSpec, build_dag_flow, dag_specs, expected_log
from prop_flows import JOB_TIMEOUT, log_entries, running

from routilux import JobState, Runtime
from routilux.status import ExecutionStatus


@settings(max_examples=100, deadline=None)
@given(spec=dag_specs())
def test_each_emit_reaches_every_connected_slot_exactly_once(spec: DagSpec) -> None:
    with running({"dag": build_dag_flow(spec)}) as runtime:
        job = runtime.exec("dag", entry_params={"token": "root"})
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)

    assert job.status is ExecutionStatus.COMPLETED, job.error
    assert log_entries(job) == expected_log(spec, "root")
    assert job.to_dict()["pending"]["slots"] == {}


def start_jobs(runtime: Runtime, roots: list[str], from_threads: bool) -> list[JobState]:
    """Start one job per root, all at once from separate threads if ``from_threads``."""
    if not from_threads:
        return [runtime.exec("dag", entry_params={"token": root}) for root in roots]
    states: dict[str, JobState] = {}
    barrier = threading.Barrier(len(roots))

    def start(root: str) -> None:
        barrier.wait(timeout=JOB_TIMEOUT)
        states[root] = runtime.exec("dag", entry_params={"token": root})

    threads = [threading.Thread(target=start, args=(root,)) for root in roots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOB_TIMEOUT)
    return [states[root] for root in roots]


@settings(max_examples=50, deadline=None)
@given(spec=dag_specs(max_nodes=5), jobs=st.integers(2, 5), from_threads=st.booleans())
def test_concurrent_jobs_of_one_flow_never_see_each_others_data(
    spec: DagSpec, jobs: int, from_threads: bool
) -> None:
    roots = [f"job{k}" for k in range(jobs)]
    with running({"dag": build_dag_flow(spec)}) as runtime:
        states = start_jobs(runtime, roots, from_threads)
        assert runtime.wait_until_all_jobs_finished(timeout=JOB_TIMEOUT)

    for root, job in zip(roots, states, strict=True):
        assert job.status is ExecutionStatus.COMPLETED, job.error
        foreign = [e for e in log_entries(job) if not e[2].startswith(root)]
        assert foreign == [], f"{root} received items of another job"
        assert log_entries(job) == expected_log(spec, root)
