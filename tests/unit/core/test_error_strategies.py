"""STOP, CONTINUE, SKIP and RETRY, per routine and per flow."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref

import pytest
from sample_routines import Recorder, Source, chain_flow

from routilux import ErrorHandler, ErrorStrategy, Flow, FlowRegistry, Routine, Runtime
from routilux.error_handler import Action, backoff, decide


class Flaky(Routine):
    """Fails the first ``fail_times`` attempts of each job (counted in the JobState)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("out", ["n"])
        self.set_config(fail_times=2, error="timeout")
        self.set_logic(self.run)

    def run(self, items, policy_message, job_state):  # type: ignore[no-untyped-def]
        attempts = job_state.shared_data.get("attempts", [])
        job_state.shared_data["attempts"] = [*attempts, time.monotonic()]
        if len(attempts) < self.get_config("fail_times"):
            if self.get_config("error") == "timeout":
                raise TimeoutError(f"attempt {len(attempts)} timed out")
            raise KeyError("not retryable")
        for item in items:
            self.emit("out", n=item["n"])


def _flaky_flow(registry: FlowRegistry, handler: ErrorHandler | None, **config: object) -> Flow:
    flow = Flow("flaky")
    flow.add_routine(Source(), "source")
    flaky = Flaky()
    flaky.set_config(**config)
    flaky.set_error_handler(handler)
    flow.add_routine(flaky, "flaky")
    flow.add_routine(Recorder(), "after")
    flow.connect("source", "out", "flaky", "input")
    flow.connect("flaky", "out", "after", "input")
    registry.register_by_name("flaky", flow)
    return flow


def test_decide_and_backoff_are_pure() -> None:
    handler = ErrorHandler(ErrorStrategy.RETRY, max_retries=2, retry_delay=0.5, retry_backoff=3)
    assert decide(handler, 0, TimeoutError()).action is Action.RETRY
    assert decide(handler, 2, TimeoutError()).action is Action.FAIL
    assert [backoff(handler, n) for n in range(3)] == [0.5, 1.5, 4.5]
    narrow = ErrorHandler(ErrorStrategy.RETRY, retryable_exceptions=[TimeoutError])
    assert decide(narrow, 0, KeyError()).action is Action.FAIL


def test_stop_is_the_default_and_records_type_message_traceback(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    _flaky_flow(registry, None)
    job = runtime.exec("flaky", {"n": 1})
    assert job.wait_for_completion(5)
    assert job.status == "failed"
    assert job.error is not None
    assert (job.error.type, job.error.message) == ("TimeoutError", "attempt 0 timed out")
    assert "Traceback" in job.error.traceback and job.error.routine_id == "flaky"
    assert "received" not in job.shared_data


def test_continue_records_the_error_and_goes_on(registry: FlowRegistry, runtime: Runtime) -> None:
    _flaky_flow(registry, ErrorHandler(ErrorStrategy.CONTINUE), fail_times=1)
    jobs = [runtime.exec("flaky", {"n": n}) for n in (1, 2)]
    for job in jobs:
        assert job.wait_for_completion(5)
        assert job.status == "completed"
        assert [e.type for e in job.errors] == ["TimeoutError"]
        assert job.error is None


def test_skip_skips_the_routine_for_the_rest_of_the_job(registry: FlowRegistry) -> None:
    class Many(Source):
        def run(self, trigger, policy_message, job_state):  # type: ignore[no-untyped-def]
            for n in range(3):
                self.emit("out", n=n)

    flow = _flaky_flow(registry, ErrorHandler(ErrorStrategy.SKIP), fail_times=1)
    flow.get_routine("flaky").set_activation_policy(
        lambda slots, js: (bool(slots["input"]), {"input": slots["input"].take(1)}, None)
    )
    flow._routines["source"] = Many()
    with Runtime(thread_pool_size=1, registry=registry) as rt:
        job = rt.exec("flaky", {"n": 0})
        assert job.wait_for_completion(5)
    assert job.status == "completed"
    assert len(job.shared_data["attempts"]) == 1  # later data was discarded, not run
    assert "received" not in job.shared_data
    assert job.to_dict()["pending"]["skipped_routines"] == ["flaky"]


def test_retry_reruns_same_data_with_backoff_on_a_timer(registry: FlowRegistry) -> None:
    handler = ErrorHandler(ErrorStrategy.RETRY, max_retries=3, retry_delay=0.1, retry_backoff=2)
    _flaky_flow(registry, handler, fail_times=2)
    registry.register_by_name("quick", chain_flow("quick"))
    # One worker thread: if a retry slept in the worker, the quick job could not run.
    with Runtime(thread_pool_size=1, registry=registry) as rt:
        job = rt.exec("flaky", {"n": 5})
        quick = rt.exec("quick", {"n": 1})
        assert quick.wait_for_completion(0.08)
        assert job.wait_for_completion(5)
    assert job.status == "completed"
    assert job.shared_data["received"] == [{"n": 5}]
    t = job.shared_data["attempts"]
    assert t[1] - t[0] >= 0.09 and t[2] - t[1] >= 0.19
    assert [r["outcome"] for r in job.execution_history if r["routine_id"] == "flaky"] == [
        "retry",
        "retry",
        "ok",
    ]


def test_retry_fails_the_job_once_retries_are_exhausted(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    _flaky_flow(
        registry, ErrorHandler(ErrorStrategy.RETRY, max_retries=1, retry_delay=0.01), fail_times=5
    )
    job = runtime.exec("flaky", {"n": 1})
    assert job.wait_for_completion(5)
    assert job.status == "failed"
    assert len(job.shared_data["attempts"]) == 2
    assert job.error is not None and job.error.attempt == 1


def test_retry_does_not_retry_other_exception_types(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    handler = ErrorHandler(
        ErrorStrategy.RETRY, retry_delay=0.01, retryable_exceptions=[TimeoutError]
    )
    _flaky_flow(registry, handler, fail_times=1, error="key")
    job = runtime.exec("flaky", {"n": 1})
    assert job.wait_for_completion(5)
    assert job.status == "failed" and job.error is not None and job.error.type == "KeyError"
    assert len(job.shared_data["attempts"]) == 1


def test_routine_handler_wins_over_flow_handler(registry: FlowRegistry, runtime: Runtime) -> None:
    flow = _flaky_flow(registry, ErrorHandler(ErrorStrategy.CONTINUE), fail_times=1)
    flow.set_error_handler(ErrorHandler(ErrorStrategy.STOP))
    job = runtime.exec("flaky", {"n": 1})
    assert job.wait_for_completion(5)
    assert job.status == "completed"


def test_flow_handler_applies_to_routines_without_their_own(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    flow = _flaky_flow(registry, None, fail_times=1)
    flow.set_error_handler(ErrorHandler(ErrorStrategy.RETRY, retry_delay=0.01))
    job = runtime.exec("flaky", {"n": 1})
    assert job.wait_for_completion(5)
    assert job.status == "completed"


def test_critical_routine_under_continue_fails_the_job_at_the_end(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    _flaky_flow(registry, ErrorHandler(ErrorStrategy.CONTINUE, is_critical=True), fail_times=1)
    job = runtime.exec("flaky", {"n": 1})
    assert job.wait_for_completion(5)
    assert job.status == "failed"
    assert job.error is not None and job.error.type == "TimeoutError"


def test_a_full_slot_raises_in_the_emitter_and_drops_nothing(registry: FlowRegistry) -> None:
    class Burst(Source):
        def run(self, trigger, policy_message, job_state):  # type: ignore[no-untyped-def]
            try:
                for n in range(5):
                    self.emit("out", n=n)
            except Exception as exc:
                job_state.shared_data["raised"] = type(exc).__name__
                raise

    class Slow(Recorder):
        def __init__(self) -> None:
            Routine.__init__(self)
            self.define_slot("input", max_queue_length=3)
            self.set_logic(self.run)

    flow = Flow("full")
    flow.add_routine(Burst(), "burst")
    flow.add_routine(Slow(), "slow")
    flow.connect("burst", "out", "slow", "input")
    registry.register_by_name("full", flow)
    with Runtime(thread_pool_size=2, registry=registry) as rt:
        job = rt.exec("full")
        assert job.wait_for_completion(5)
    assert job.status == "failed"
    assert job.error is not None and job.error.type == "SlotQueueFullError"
    assert "slot slow.input" in job.error.message
    assert job.shared_data["raised"] == "SlotQueueFullError"


@pytest.mark.parametrize("strategy", list(ErrorStrategy))
def test_handler_round_trips_through_to_dict(strategy: ErrorStrategy) -> None:
    handler = ErrorHandler(strategy, max_retries=4, retry_delay=0.2, retryable_exceptions=[OSError])
    again = ErrorHandler.from_dict(handler.to_dict())
    assert again.to_dict() == handler.to_dict()


def test_retry_handler_state_is_per_job_not_on_the_handler(registry: FlowRegistry) -> None:
    handler = ErrorHandler(ErrorStrategy.RETRY, max_retries=2, retry_delay=0.01)
    _flaky_flow(registry, handler, fail_times=2)
    with Runtime(thread_pool_size=4, registry=registry) as rt:
        jobs = [rt.exec("flaky", {"n": n}) for n in range(20)]
        assert rt.wait_until_all_jobs_finished(10)
    assert all(job.status == "completed" for job in jobs)
    assert threading.active_count() < 100


class Payload:
    """Entry data the test can watch being freed (weak-referenceable)."""


class Fails(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.set_logic(self.run)

    def run(self, trigger, policy_message, job_state):  # type: ignore[no-untyped-def]
        raise ValueError("boom")


def test_a_failed_activation_frees_its_data_without_the_cyclic_gc(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its traceback must not keep the activation's frame, and so its data, in a cycle:
    the daemon runs the cyclic GC rarely, so such cycles would hold payloads for long."""
    # The failure's warning carries the exception; captured records would keep it.
    caplog.set_level(logging.ERROR, logger="routilux.runtime.job_run")

    registry = FlowRegistry()
    flow = Flow("fails")
    flow.add_routine(Fails(), "fails")
    flow.set_error_handler(ErrorHandler(ErrorStrategy.STOP))
    registry.register_by_name("fails", flow)
    runtime = Runtime(thread_pool_size=1, registry=registry, max_finished_jobs=0)
    gc.disable()
    try:
        payload = Payload()
        watched = weakref.ref(payload)
        job = runtime.exec("fails", {"payload": payload})
        del payload
        assert job.wait(10) and job.status.value == "failed"
        del job
        # A second job, so that the worker thread's locals no longer name the first one.
        assert runtime.exec("fails", {"payload": None}).wait(10)
        assert runtime.wait_until_all_jobs_finished(10)
        assert watched() is None
    finally:
        gc.enable()
        runtime.shutdown(wait=True)
