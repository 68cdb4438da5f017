"""Checkpointer snapshots: when they come, what they hold, and that they are consistent."""

from __future__ import annotations

import json

from memory_checkpointer import MemoryCheckpointer
from sample_routines import BatchSink, Fanout, chain_flow

from routilux import ErrorHandler, ErrorStrategy, Flow, FlowRegistry, Runtime


def test_snapshot_at_start_after_each_activation_and_at_the_end(
    registry: FlowRegistry, checkpointer: MemoryCheckpointer
) -> None:
    registry.register_by_name("chain", chain_flow())
    with Runtime(thread_pool_size=2, registry=registry, checkpointer=checkpointer) as rt:
        job = rt.exec("chain", {"n": 3})
        assert job.wait_for_completion(5)
        assert rt.wait_until_all_jobs_finished(5)
    snaps = checkpointer.for_job(job.job_id)
    assert [s["checkpoint_seq"] for s in snaps] == [1, 2, 3, 4]
    assert [s["status"] for s in snaps] == ["running", "running", "running", "completed"]
    first = snaps[0]["pending"]["activations"]
    assert first == [
        {
            "routine_id": "source",
            "data": {"trigger": [{"n": 3}]},
            "policy_message": None,
            "attempt": 0,
        }
    ]
    assert snaps[1]["pending"]["activations"][0]["routine_id"] == "double"
    assert snaps[-1]["shared_data"] == {"collected": [6]}
    assert snaps[-1]["pending"]["activations"] == []
    assert snaps[0]["flow_fingerprint"] == chain_flow().fingerprint()
    for snap in snaps:
        json.dumps(snap)  # plain JSON


def test_snapshots_hold_only_committed_writes_of_finished_activations(
    registry: FlowRegistry, checkpointer: MemoryCheckpointer
) -> None:
    flow = Flow("batches")
    flow.add_routine(Fanout(), "fan")
    flow.add_routine(BatchSink(), "sink")
    flow.connect("fan", "item", "sink", "input")
    registry.register_by_name("batches", flow)
    with Runtime(thread_pool_size=4, registry=registry, checkpointer=checkpointer) as rt:
        job = rt.exec("batches", {"count": 100})
        assert job.wait_for_completion(5)
        assert rt.wait_until_all_jobs_finished(5)
    for snap in checkpointer.for_job(job.job_id):
        done = [n for batch in snap["shared_data"].get("batches", []) for n in batch]
        running = [
            i["n"] for a in snap["pending"]["activations"] for i in a["data"].get("input", [])
        ]
        queued = [i["n"] for i in snap["pending"]["slots"].get("sink", {}).get("input", [])]
        if snap["execution_history"] and snap["checkpoint_seq"] > 1:
            # every item is in exactly one place: done, running, or waiting
            assert sorted(done + running + queued) == list(range(100)), snap["checkpoint_seq"]


def test_a_failed_attempts_writes_are_kept_and_its_emits_withheld(
    registry: FlowRegistry, checkpointer: MemoryCheckpointer
) -> None:
    from test_error_strategies import _flaky_flow

    _flaky_flow(registry, ErrorHandler(ErrorStrategy.RETRY, retry_delay=0.01), fail_times=2)
    with Runtime(thread_pool_size=2, registry=registry, checkpointer=checkpointer) as rt:
        job = rt.exec("flaky", {"n": 1})
        assert job.wait_for_completion(5)
        assert rt.wait_until_all_jobs_finished(5)
    snaps = checkpointer.for_job(job.job_id)
    retry_snaps = [s for s in snaps if s["pending"]["timers"]]
    assert [len(s["shared_data"]["attempts"]) for s in retry_snaps] == [1, 2]
    assert all("received" not in s["shared_data"] for s in retry_snaps)
    assert [s["pending"]["timers"][0]["activation"]["attempt"] for s in retry_snaps] == [1, 2]
    assert snaps[-1]["shared_data"]["received"] == [{"n": 1}]
    assert job.shared_data == snaps[-1]["shared_data"]


def test_checkpointer_failure_is_logged_and_the_job_goes_on(registry: FlowRegistry) -> None:
    class Broken:
        def save(self, snapshot):  # type: ignore[no-untyped-def]
            raise OSError("disk full")

    registry.register_by_name("chain", chain_flow())
    with Runtime(thread_pool_size=2, registry=registry, checkpointer=Broken()) as rt:
        job = rt.exec("chain", {"n": 1})
        assert job.wait_for_completion(5)
    assert job.status == "completed"
