"""Runtime: exec, delivery, isolation, completion, cancel, shutdown."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sample_routines import Collect, Double, Fanout, Recorder, Source, chain_flow

from routilux import (
    ExecutionStatus,
    Flow,
    FlowNotFoundError,
    FlowRegistry,
    Routine,
    Runtime,
    RuntimeStoppedError,
)


class Hold(Routine):
    """Waits on a per-test event passed in the data point's routine config."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("out", ["n"])
        self.set_logic(self.run)

    def run(self, trigger, policy_message, job_state):  # type: ignore[no-untyped-def]
        started, release = self.get_config("started"), self.get_config("release")
        started.set()
        assert release.wait(10)
        self.emit("out", n=1)


def test_chain_completes_and_values_flow_through(registry: FlowRegistry, runtime: Runtime) -> None:
    registry.register_by_name("chain", chain_flow())
    job = runtime.exec("chain", entry_params={"n": 21})
    assert job.wait_for_completion(5)
    assert job.status is ExecutionStatus.COMPLETED
    assert job.shared_data["collected"] == [42]
    assert [r["routine_id"] for r in job.execution_history] == ["source", "double", "collect"]
    assert job.started_at is not None and job.completed_at is not None


def test_unknown_flow_raises_value_error_naming_it(runtime: Runtime) -> None:
    with pytest.raises(FlowNotFoundError, match=r"no flow registered as 'ghost'") as info:
        runtime.exec("ghost")
    assert isinstance(info.value, ValueError)


def test_exec_after_shutdown_raises_runtime_error(registry: FlowRegistry) -> None:
    registry.register_by_name("chain", chain_flow())
    rt = Runtime(thread_pool_size=2, registry=registry)
    rt.shutdown()
    with pytest.raises(RuntimeStoppedError) as info:
        rt.exec("chain")
    assert isinstance(info.value, RuntimeError)
    assert rt.shutdown() is True  # idempotent


def test_each_emit_reaches_every_connected_slot_exactly_once(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    flow = Flow("fan")
    flow.add_routine(Source(), "source")
    for name in ("left", "right", "third"):
        flow.add_routine(Recorder(), name)
        flow.connect("source", "out", name, "input")
    registry.register_by_name("fan", flow)
    job = runtime.exec("fan", {"n": 7})
    assert job.wait_for_completion(5)
    assert job.shared_data["received"] == [{"n": 7}] * 3


def test_one_flow_serves_hundreds_of_concurrent_jobs_in_isolation(
    registry: FlowRegistry,
) -> None:
    flow = Flow("iso")
    flow.add_routine(Fanout(), "fan")
    flow.add_routine(Double(), "double")
    flow.add_routine(Collect(), "collect")
    flow.connect("fan", "item", "double", "input")
    flow.connect("double", "out", "collect", "input")
    registry.register_by_name("iso", flow)
    with Runtime(thread_pool_size=8, registry=registry) as rt:
        jobs = [rt.exec("iso", {"count": 1 + i % 7}) for i in range(300)]
        assert rt.wait_until_all_jobs_finished(30)
    for i, job in enumerate(jobs):
        assert job.status == "completed"
        assert sorted(job.shared_data["collected"]) == [2 * k for k in range(1 + i % 7)]


def test_cancel_lets_the_running_activation_finish_and_starts_nothing_new(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    started, release = threading.Event(), threading.Event()
    hold = Hold()
    hold.set_config(started=started, release=release)
    flow = Flow("cancel")
    flow.add_routine(hold, "hold")
    flow.add_routine(Recorder(), "after")
    flow.connect("hold", "out", "after", "input")
    registry.register_by_name("cancel", flow)
    job = runtime.exec("cancel")
    assert started.wait(5)
    assert runtime.cancel_job(job.job_id) is True
    assert job.status is ExecutionStatus.CANCELLED
    release.set()
    assert runtime.wait_until_all_jobs_finished(5)
    assert "received" not in job.shared_data
    assert runtime.cancel_job(job.job_id) is False


def test_get_job_and_list_jobs_by_status(registry: FlowRegistry, runtime: Runtime) -> None:
    registry.register_by_name("chain", chain_flow())
    jobs = [runtime.exec("chain", {"n": i}, job_id=f"job-{i}") for i in range(3)]
    assert runtime.wait_until_all_jobs_finished(5)
    assert runtime.get_job("job-1") is jobs[1]
    assert runtime.get_job("nope") is None
    assert {j.job_id for j in runtime.list_jobs("completed")} == {"job-0", "job-1", "job-2"}
    assert runtime.list_jobs(ExecutionStatus.FAILED) == []


def test_wait_until_all_jobs_finished_times_out_while_work_is_held(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    started, release = threading.Event(), threading.Event()
    hold = Hold()
    hold.set_config(started=started, release=release)
    flow = Flow("held")
    flow.add_routine(hold, "hold")
    registry.register_by_name("held", flow)
    job = runtime.exec("held")
    assert started.wait(5)
    assert runtime.wait_until_all_jobs_finished(0.05) is False
    assert job.status is ExecutionStatus.RUNNING
    release.set()
    assert runtime.wait_until_all_jobs_finished(5) is True


def test_current_routine_id_is_per_activation(registry: FlowRegistry, runtime: Runtime) -> None:
    seen: list[Any] = []

    class Who(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger")
            self.set_logic(lambda t, m, js: seen.append(js.current_routine_id))

    flow = Flow("who")
    flow.add_routine(Who(), "me")
    registry.register_by_name("who", flow)
    job = runtime.exec("who")
    assert job.wait_for_completion(5)
    assert seen == ["me"]
    assert job.current_routine_id is None


def test_data_left_in_a_slot_whose_policy_never_fires_is_kept_not_blocking(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    from routilux.activation_policies import batch_size_policy

    flow = chain_flow("leftover")
    flow.get_routine("collect").set_activation_policy(batch_size_policy(2))
    registry.register_by_name("leftover", flow)
    job = runtime.exec("leftover", {"n": 1})
    assert job.wait_for_completion(5)
    assert job.status == "completed"
    assert job.to_dict()["pending"]["slots"] == {"collect": {"input": [{"n": 2}]}}
