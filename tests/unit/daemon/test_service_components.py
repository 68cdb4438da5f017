"""The service's small parts: job tracker, bridge, signals, message parsing, bindings."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest

from daemon.amqp.consumer import queue_arguments
from daemon.amqp.intake import parse_body
from daemon.amqp.publisher import result_body
from daemon.bridge import Bridge
from daemon.checkpoints.memory import MemoryCheckpointStore
from daemon.checkpoints.sqlite import SqliteCheckpointStore
from daemon.launcher import Launcher
from daemon.metrics import Metrics
from daemon.runtime_hooks import JobTracker
from daemon.service_parts import queue_bindings, start_runtime, timer_specs
from daemon.settings import Settings
from daemon.signals import EXIT_FORCED, SignalHandler
from routilux import ErrorHandler, ErrorStrategy, Flow, Routine, Runtime
from routilux.job_state import JobState
from routilux.monitoring.flow_registry import FlowRegistry
from routilux.status import ExecutionStatus


class Double(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("out", ["n"])
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        for point in trigger:
            self.emit("out", n=point["n"] * 2)


class Keep(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.run)

    def run(self, input: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        for point in input:
            job_state.shared_data["n"] = point["n"]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def pair_registry() -> FlowRegistry:
    """A registry holding flow "pair": double -> keep."""
    registry = FlowRegistry()
    flow = Flow("pair")
    flow.add_routine(Double(), "double")
    flow.add_routine(Keep(), "keep")
    flow.connect("double", "out", "keep", "input")
    registry.register_by_name("pair", flow)
    return registry


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_tracker_reports_start_activations_and_end_and_resolves_waiters(
    kind: str, tmp_path: Path
) -> None:
    registry = pair_registry()
    store: Any = (
        MemoryCheckpointStore()
        if kind == "memory"
        else SqliteCheckpointStore(str(tmp_path / "t.db"))
    )
    metrics = Metrics("test")

    async def main() -> dict[str, Any]:
        tracker = JobTracker(store, metrics, Bridge(asyncio.get_running_loop(), threads=1))
        runtime = Runtime(thread_pool_size=2, checkpointer=tracker, registry=registry)
        try:
            ended = tracker.wait_terminal("job-1")
            tracker.expect("job-1", "amqp:q")
            runtime.exec("pair", {"n": 21}, job_id="job-1")
            return await asyncio.wait_for(ended, 10)
        finally:
            runtime.shutdown(wait=True, timeout=5)
            tracker.close()

    snapshot = asyncio.run(main())
    assert snapshot["status"] == "completed" and snapshot["shared_data"] == {"n": 42}
    assert store.wait_durable("job-1", timeout=5)
    row = store.get_job("job-1")
    assert row is not None and row.state == snapshot
    store.close()
    assert sample(metrics, "routilux_jobs_started_total", flow="pair") == 1
    assert sample(metrics, "routilux_jobs_finished_total", flow="pair", status="completed") == 1
    assert sample(metrics, "routilux_jobs_running", flow="pair") == 0
    for routine in ("double", "keep"):
        assert (
            sample(
                metrics, "routilux_activations_total", flow="pair", routine=routine, outcome="ok"
            )
            == 1
        )
    assert sample(metrics, "routilux_jobs_resumed_total", flow="pair") == 0


class Gate(Routine):
    """Waits for its ``release`` event before it finishes."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.define_slot("trigger")
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        assert self.release.wait(10)


def test_only_job_ends_wake_the_loop_and_every_line_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    registry = FlowRegistry()
    flow = Flow("gated")
    flow.add_routine(Gate(release), "gate")
    registry.register_by_name("gated", flow)
    store = MemoryCheckpointStore()

    async def main() -> tuple[int, int]:
        bridge = Bridge(asyncio.get_running_loop(), threads=1)
        scheduled: list[Any] = []
        real_call_soon = bridge.call_soon

        def counting_call_soon(fn: Any, *args: Any) -> None:
            scheduled.append(fn)
            real_call_soon(fn, *args)

        bridge.call_soon = counting_call_soon  # type: ignore[method-assign]
        tracker = JobTracker(store, Metrics("test"), bridge)
        runtime = Runtime(thread_pool_size=2, checkpointer=tracker, registry=registry)
        try:
            ended = [tracker.wait_terminal(f"job-{i}") for i in range(20)]
            for i in range(20):
                tracker.expect(f"job-{i}", "amqp:q")
                runtime.exec("gated", {"n": i}, job_id=f"job-{i}")
            before_any_end = len(scheduled)
            release.set()
            await asyncio.wait_for(asyncio.gather(*ended), 10)
        finally:
            release.set()
            runtime.shutdown(wait=True, timeout=5)
            tracker.close()
            bridge.close()
        return before_any_end, len(scheduled)

    with caplog.at_level(logging.INFO, logger="daemon.jobs"):
        before_any_end, wakeups = asyncio.run(main())
    assert before_any_end == 0  # starts are logged without waking the loop
    assert 1 <= wakeups <= 20  # ends, coalesced while a wakeup is pending
    lines = [r.getMessage() for r in caplog.records if r.name == "daemon.jobs"]
    assert sum(line.startswith("job start ") for line in lines) == 20
    assert sum(line.startswith("job end ") for line in lines) == 20


class SlowFlaky(Routine):
    """Sleeps 20 ms, then fails its first attempt."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.set_error_handler(ErrorHandler(ErrorStrategy.RETRY, retry_delay=0.01))
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        time.sleep(0.02)
        tries = job_state.shared_data.get("tries", 0) + 1
        job_state.shared_data["tries"] = tries
        if tries == 1:
            raise ConnectionError("first try fails")


def test_tracker_counts_each_activation_once_with_its_duration_across_retry_timers() -> None:
    registry = FlowRegistry()
    flow = Flow("flaky")
    flow.add_routine(SlowFlaky(), "slow")
    registry.register_by_name("flaky", flow)
    store = MemoryCheckpointStore()
    metrics = Metrics("test")

    async def main() -> None:
        tracker = JobTracker(store, metrics, Bridge(asyncio.get_running_loop(), threads=1))
        runtime = Runtime(thread_pool_size=2, checkpointer=tracker, registry=registry)
        try:
            ended = tracker.wait_terminal("job-r")
            tracker.expect("job-r", "interval:flaky")
            runtime.exec("flaky", {}, job_id="job-r")
            await asyncio.wait_for(ended, 10)
        finally:
            runtime.shutdown(wait=True, timeout=5)
            tracker.close()

    asyncio.run(main())
    labels = {"flow": "flaky", "routine": "slow"}
    assert sample(metrics, "routilux_activations_total", outcome="retry", **labels) == 1
    assert sample(metrics, "routilux_activations_total", outcome="ok", **labels) == 1
    assert sample(metrics, "routilux_activation_duration_seconds_count", **labels) == 2
    assert sample(metrics, "routilux_activation_duration_seconds_sum", **labels) >= 0.04


def test_a_job_whose_times_cannot_be_subtracted_still_records_its_end() -> None:
    # User logic may set a naive started_at on an aware job: its run time cannot be
    # computed, and the terminal checkpoint must be saved regardless.
    store = MemoryCheckpointStore()
    metrics = Metrics("test")

    async def main() -> None:
        tracker = JobTracker(store, metrics, Bridge(asyncio.get_running_loop(), threads=1))
        try:
            state = JobState(flow_id="pair", job_id="job-t")
            tracker.expect("job-t", "amqp:q")
            state._transition(ExecutionStatus.RUNNING)
            tracker.save_deferred(state, 1)
            state.started_at = datetime(2026, 1, 1)  # naive
            state._transition(ExecutionStatus.COMPLETED)
            tracker.save_deferred(state, 2)
        finally:
            tracker.close()

    asyncio.run(main())
    row = store.get_job("job-t")
    assert row is not None and row.status == "completed"
    assert sample(metrics, "routilux_jobs_finished_total", flow="pair", status="completed") == 1


def test_the_daemons_runtime_forgets_finished_jobs() -> None:
    # The store keeps them; in memory they would only lengthen full GC passes.
    registry = pair_registry()
    runtime = start_runtime(2, MemoryCheckpointStore(), registry)
    try:
        job = runtime.exec("pair", {"n": 1})
        assert runtime.wait_until_all_jobs_finished(5)
        assert job.status.value == "completed"
        assert runtime.get_job(job.job_id) is None
    finally:
        runtime.shutdown(wait=True, timeout=5)


def test_launcher_job_ids_are_version_4_uuids() -> None:
    ids = {Launcher._new_job_id(cast(Any, _SeededLauncher())) for _ in range(200)}
    assert len(ids) == 200
    for job_id in ids:
        parsed = uuid.UUID(hex=job_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and parsed.hex == job_id


class _SeededLauncher:
    _ids = random.Random(7)

    def _new_job_id(self) -> str:
        return Launcher._new_job_id(cast(Any, self))


def test_a_keyed_job_gets_the_same_id_in_every_process_and_unkeyed_ones_random_ids() -> None:
    # A redelivery of a message whose job died unrecorded must run under the same id.
    one, other = cast(Any, _SeededLauncher()), cast(Any, _SeededLauncher())
    keyed = Launcher._job_id(one, "msg-1")
    assert keyed == Launcher._job_id(other, "msg-1") != Launcher._job_id(one, "msg-2")
    assert keyed == uuid.uuid5(uuid.UUID("5f0c6d1e-3b8a-4c52-9e57-1d2f8a6b9c40"), "msg-1").hex
    assert Launcher._job_id(one, None) != Launcher._job_id(one, None)


def test_bridge_runs_blocking_calls_off_the_loop_and_hands_calls_back() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        bridge = Bridge(loop, threads=2)
        seen: list[str] = []
        done = asyncio.Event()

        def from_thread() -> str:
            bridge.call_soon(seen.append, "called back")
            bridge.call_soon(done.set)
            return "ran"

        try:
            seen.append(await bridge.run_blocking(from_thread))
            await asyncio.wait_for(done.wait(), 5)
        finally:
            bridge.close()
        return seen

    assert sorted(asyncio.run(main())) == ["called back", "ran"]


def test_first_signal_drains_and_the_second_exits_at_once() -> None:
    stops: list[int] = []
    exits: list[int] = []
    handler = SignalHandler(lambda: stops.append(1), exit_now=exits.append)
    handler.handle(signal.SIGTERM)
    assert stops == [1] and exits == []
    handler.handle(signal.SIGINT)
    assert stops == [1] and exits == [EXIT_FORCED]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"text"', "must be a JSON object, got str"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused_with_a_reason(
    body: bytes, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_body(body)


def test_a_json_object_body_becomes_the_entry_params() -> None:
    assert parse_body(b'{"n": 1, "tags": ["a"]}') == {"n": 1, "tags": ["a"]}


def test_the_reply_carries_exactly_the_contract_fields() -> None:
    snapshot = {
        "job_id": "j",
        "flow_id": "f",
        "status": "failed",
        "error": {"type": "ValueError", "message": "bad"},
        "shared_data": {"x": 1},
        "routine_states": {"ignored": {}},
    }
    assert result_body(snapshot) == {
        "job_id": "j",
        "flow": "f",
        "status": "failed",
        "error": {"type": "ValueError", "message": "bad"},
        "shared_data": {"x": 1},
    }


def test_bound_queues_dead_letter_to_their_own_dlq() -> None:
    assert queue_arguments("orders", "routilux.dlx") == {
        "x-dead-letter-exchange": "routilux.dlx",
        "x-dead-letter-routing-key": "orders.dlq",
    }


def test_triggers_become_bindings_and_timer_specs_named_like_jobs_trigger() -> None:
    settings = Settings(
        triggers=[
            {"type": "amqp", "flow": "a", "queue": "q1", "entry": "r.s"},
            {"type": "interval", "flow": "b", "seconds": 5, "params": {"k": 1}},
            {
                "type": "cron",
                "flow": "c",
                "cron": "0 * * * *",
                "timezone": "Europe/Berlin",
                "id": "hourly",
                "catch_up": "all",
                "max_instances": 2,
            },
        ]
    )
    (binding,) = queue_bindings(settings.triggers)
    assert (binding.queue, binding.flow, binding.trigger, binding.entry) == (
        "q1",
        "a",
        "amqp:q1",
        "r.s",
    )
    interval, cron = timer_specs(settings.triggers)
    assert (interval.trigger_id, interval.seconds, interval.params) == ("interval:b", 5, {"k": 1})
    assert (cron.trigger_id, cron.timezone, cron.catch_up, cron.max_instances) == (
        "hourly",
        "Europe/Berlin",
        "all",
        2,
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}", "nested deeper than 200 levels"),
        (b"[" * 50_000 + b"]" * 50_000, "nested deeper than 200 levels"),
    ],
)
def test_parse_body_rejects_non_json_numbers_and_deep_nesting(body: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_body(body)


def test_parse_body_keeps_integers_beyond_64_bits_exact() -> None:
    big = 2**70 + 1
    assert parse_body(b'{"id": %d, "f": 1.5, "s": "x"}' % big) == {"id": big, "f": 1.5, "s": "x"}
    assert parse_body('{"t": "h\u00e9 ☃", "n": [null, true]}'.encode()) == {
        "t": "hé ☃",
        "n": [None, True],
    }


def test_parse_body_accepts_nesting_up_to_the_limit() -> None:
    body = b'{"a": ' + b"[" * 199 + b"]" * 199 + b"}"
    assert parse_body(body) == json.loads(body)
