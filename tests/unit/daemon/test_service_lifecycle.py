"""The Service in-process: start order, readiness, drain on stop, resume, fatal exits.

No broker is needed: timers drive the jobs, and the one AMQP case points at a
closed port to check that an unreachable broker does not stop the daemon.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.service import EXIT_FATAL, Service
from daemon.settings import Settings
from routilux import Flow, Routine
from routilux.monitoring.flow_registry import FlowRegistry

#: Set by Gate routines; each test builds a fresh one.
GATES: dict[str, threading.Event] = {}
COUNTS: dict[str, int] = {}
COUNT_LOCK = threading.Lock()
COUNT_REACHED: dict[str, tuple[int, threading.Event]] = {}
STARTED: dict[str, threading.Event] = {}


class Gate(Routine):
    """Counts its runs; blocks until its test's gate opens (if the params name one)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        for point in trigger:
            name = point["name"]
            STARTED.setdefault(name, threading.Event()).set()
            gate = GATES.get(name)
            if gate is not None:
                gate.wait(10)
            with COUNT_LOCK:
                COUNTS[name] = COUNTS.get(name, 0) + 1
                wanted, reached = COUNT_REACHED.get(name, (0, threading.Event()))
                if COUNTS[name] >= wanted:
                    reached.set()
            job_state.shared_data["ran"] = True


@pytest.fixture
def flow_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"svc_{request.node.name[:40]}"
    flow = Flow(name)
    flow.add_routine(Gate(), "gate")
    registry = FlowRegistry.get_instance()
    registry.register_by_name(name, flow)
    yield name
    registry.unregister(name)
    GATES.pop(name, None)
    COUNT_REACHED.pop(name, None)
    STARTED.pop(name, None)


def settings(tmp_path: Path, flow: str, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "runtime": {"threads": 2, "shutdown_timeout": 5},
        "store": {"path": str(tmp_path / "store.db"), "synchronous": "normal"},
        "metrics": {"host": "127.0.0.1", "port": 0},
        "triggers": [{"type": "interval", "flow": flow, "seconds": 0.1, "params": {"name": flow}}],
    }
    data.update(overrides)
    return Settings(**data)


def expect_runs(flow: str, count: int) -> threading.Event:
    reached = threading.Event()
    COUNT_REACHED[flow] = (count, reached)
    return reached


def rows(tmp_path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        return list(conn.execute("SELECT status, trigger FROM jobs"))
    finally:
        conn.close()


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def wait_event(event: threading.Event, timeout: float = 10) -> None:
    assert await asyncio.to_thread(event.wait, timeout), "event not set in time"


def test_service_runs_timer_jobs_reports_ready_and_stops_cleanly(
    tmp_path: Path, flow_name: str
) -> None:
    reached = expect_runs(flow_name, 2)

    async def main() -> None:
        service = Service(settings(tmp_path, flow_name), handle_signals=False)
        await service.start()
        try:
            await wait_event(reached)
            assert service.readiness().ready
            assert await asyncio.to_thread(http_status, service.http_port, "/readyz") == 200
        finally:
            await service.stop()
        assert not service.readiness().ready

    asyncio.run(main())
    done = [r for r in rows(tmp_path) if r[0] == "completed"]
    assert len(done) >= 2 and {t for _, t in done} == {f"interval:{flow_name}"}


def test_stop_lets_running_jobs_finish_within_the_shutdown_timeout(
    tmp_path: Path, flow_name: str
) -> None:
    gate = GATES[flow_name] = threading.Event()

    async def main() -> None:
        service = Service(settings(tmp_path, flow_name), handle_signals=False)
        await service.start()
        await wait_event(STARTED.setdefault(flow_name, threading.Event()))
        # Open the gate shortly after the drain began: the job must still complete.
        asyncio.get_running_loop().call_later(0.5, gate.set)
        await service.stop()

    asyncio.run(main())
    statuses = {status for status, _ in rows(tmp_path)}
    assert statuses == {"completed"}


def test_jobs_cut_by_the_shutdown_timeout_resume_on_the_next_start(
    tmp_path: Path, flow_name: str
) -> None:
    gate = GATES[flow_name] = threading.Event()
    short = {"runtime": {"threads": 2, "shutdown_timeout": 0.1}}
    first_ran = STARTED.setdefault(flow_name, threading.Event())

    async def first() -> None:
        service = Service(settings(tmp_path, flow_name, **short), handle_signals=False)
        await service.start()
        await wait_event(first_ran)
        await service.stop()  # the job is stuck at its gate past the 0.1 s grace

    asyncio.run(first())
    unfinished = [r for r in rows(tmp_path) if r[0] in ("pending", "running")]
    assert unfinished, "the stuck job was cut short and kept its checkpoint"
    gate.set()  # the abandoned activation ends; its late snapshot is dropped
    timer_less = settings(tmp_path, flow_name, triggers=[])

    async def second() -> None:
        service = Service(timer_less, handle_signals=False)
        await service.start()
        await service.stop()

    asyncio.run(second())
    assert {status for status, _ in rows(tmp_path)} == {"completed"}


def test_unreachable_broker_keeps_timers_running_and_reports_unready(
    tmp_path: Path, flow_name: str
) -> None:
    reached = expect_runs(flow_name, 2)
    config = settings(
        tmp_path,
        flow_name,
        amqp={"url": "amqp://guest:guest@127.0.0.1:1/"},
        triggers=[
            {"type": "interval", "flow": flow_name, "seconds": 0.1, "params": {"name": flow_name}},
            {"type": "amqp", "flow": flow_name, "queue": f"{flow_name}.never"},
        ],
    )

    async def main() -> None:
        service = Service(config, handle_signals=False)
        await service.start()
        try:
            await wait_event(reached)
            readiness = service.readiness()
            assert not readiness.ready and "amqp" in readiness.reason
        finally:
            await service.stop()

    asyncio.run(main())


def test_a_trigger_naming_an_unknown_flow_is_fatal(tmp_path: Path, flow_name: str) -> None:
    config = settings(
        tmp_path, flow_name, triggers=[{"type": "interval", "flow": "no_such_flow", "seconds": 1}]
    )
    code = asyncio.run(Service(config, handle_signals=False).run())
    assert code == EXIT_FATAL


def test_request_stop_ends_run_with_exit_zero(tmp_path: Path, flow_name: str) -> None:
    reached = expect_runs(flow_name, 1)

    async def main() -> int:
        service = Service(settings(tmp_path, flow_name), handle_signals=False)
        running = asyncio.ensure_future(service.run())
        await wait_event(reached)
        service.request_stop()
        return await asyncio.wait_for(running, 30)

    assert asyncio.run(main()) == 0


def test_a_store_that_cannot_be_opened_is_fatal(tmp_path: Path, flow_name: str) -> None:
    (tmp_path / "not-a-dir").write_text("")
    config = settings(tmp_path, flow_name, store={"path": str(tmp_path / "not-a-dir" / "s.db")})
    assert asyncio.run(Service(config, handle_signals=False).run()) == EXIT_FATAL


def test_a_metrics_port_in_use_is_fatal_and_what_started_is_stopped(
    tmp_path: Path, flow_name: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = settings(tmp_path, flow_name, metrics={"host": "127.0.0.1", "port": port})
        assert asyncio.run(Service(config, handle_signals=False).run()) == EXIT_FATAL
    # The store was opened before the failure and closed by the stop sequence.
    assert rows(tmp_path) == []
