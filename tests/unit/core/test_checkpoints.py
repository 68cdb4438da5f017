"""Checkpointer snapshots: when they come, what they hold, and that they are consistent."""

from __future__ import annotations

import json
import threading
from typing import Any

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


class DeferredCheckpointer:
    """Records what ``save_deferred`` is given; snapshots are taken only when asked."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, int]] = []
        self.takers: dict[str, Any] = {}
        self.eager: list[dict[str, Any]] = []

    def save(self, snapshot: dict[str, Any]) -> None:
        self.eager.append(snapshot)

    def save_deferred(self, job_state: Any, seq: int) -> None:
        self.marks.append((job_state.job_id, seq))
        self.takers[job_state.job_id] = job_state.to_dict


def test_a_deferring_checkpointer_is_marked_at_each_change_and_takes_snapshots_later(
    registry: FlowRegistry,
) -> None:
    registry.register_by_name("chain", chain_flow())
    checkpointer = DeferredCheckpointer()
    with Runtime(thread_pool_size=2, registry=registry, checkpointer=checkpointer) as rt:
        job = rt.exec("chain", {"n": 3})
        assert job.wait_for_completion(5)
        assert rt.wait_until_all_jobs_finished(5)
    assert checkpointer.eager == []  # save() is not called when save_deferred exists
    assert checkpointer.marks == [(job.job_id, seq) for seq in (1, 2, 3, 4)]
    late = checkpointer.takers[job.job_id]()
    assert late == job.to_dict()
    assert late["status"] == "completed" and late["checkpoint_seq"] == 4
    assert late["shared_data"] == {"collected": [6]}


def test_a_deferred_snapshot_taken_mid_job_is_consistent(registry: FlowRegistry) -> None:
    flow = Flow("batches")
    flow.add_routine(Fanout(), "fan")
    flow.add_routine(BatchSink(), "sink")
    flow.connect("fan", "item", "sink", "input")
    registry.register_by_name("batches", flow)
    checkpointer = DeferredCheckpointer()
    taken: list[dict[str, Any]] = []
    grabbers: list[threading.Thread] = []
    original = checkpointer.save_deferred

    def take_at_once(job_state: Any, seq: int) -> None:
        original(job_state, seq)
        # Another thread takes it while the job runs on (as the store's writer does).
        grab = threading.Thread(target=lambda: taken.append(job_state.to_dict()))
        grabbers.append(grab)
        grab.start()

    checkpointer.save_deferred = take_at_once  # type: ignore[method-assign]
    # One worker: BatchSink's read-modify-write of shared_data is not safe against itself.
    with Runtime(thread_pool_size=1, registry=registry, checkpointer=checkpointer) as rt:
        job = rt.exec("batches", {"count": 100})
        assert job.wait_for_completion(5)
        assert rt.wait_until_all_jobs_finished(5)
    for grab in grabbers:
        grab.join(5)
    assert len(taken) == len(checkpointer.marks) > 2
    for snap in taken:
        done = [n for batch in snap["shared_data"].get("batches", []) for n in batch]
        running = [
            i["n"] for a in snap["pending"]["activations"] for i in a["data"].get("input", [])
        ]
        queued = [i["n"] for i in snap["pending"]["slots"].get("sink", {}).get("input", [])]
        if snap["execution_history"]:
            assert sorted(done + running + queued) == list(range(100)), snap["checkpoint_seq"]
