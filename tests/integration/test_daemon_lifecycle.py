"""Daemon subprocess lifecycle: timers, SIGTERM drain, SIGKILL + restart, broker loss."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from daemon.signals import EXIT_FORCED

from .daemon_harness import Broker, Daemon, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


def test_interval_trigger_fires_jobs_with_unique_run_ids(
    make_daemon: Callable[..., Daemon], prefix: str
) -> None:
    daemon = make_daemon(queue=False, interval=0.3)
    trigger = f"{prefix}-tick"
    done = wait_for(lambda: len(daemon.completed(trigger)) >= 3 and daemon.completed(trigger), 10)
    keys = [j["dedupe_key"] for j in done]
    assert len(set(keys)) == len(keys) and all(k.startswith(f"{trigger}@") for k in keys)
    assert json.loads(done[0]["state"])["shared_data"]["params"] == {"source": "interval"}
    wait_for(
        lambda: daemon.metric("routilux_trigger_fires_total", flow="tick", trigger=trigger) >= 3, 5
    )


def test_restart_catches_up_every_missed_interval_slot_exactly_once(
    make_daemon: Callable[..., Daemon], prefix: str
) -> None:
    daemon = make_daemon(queue=False, interval=0.25, catch_up="all")
    trigger = f"{prefix}-tick"
    wait_for(lambda: len(daemon.completed(trigger)) >= 2, 10)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0
    before = len(daemon.jobs())
    time.sleep(1.5)  # downtime: about six slots are missed
    daemon.start()
    wait_for(lambda: len(daemon.completed(trigger)) >= before + 8, 15)
    slots = sorted(datetime.fromisoformat(j["dedupe_key"].split("@", 1)[1]) for j in daemon.jobs())
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(slots)}
    assert gaps == {0.25}, "every slot ran once: no gap, no duplicate"


def test_sigterm_drains_running_jobs_and_exits_zero(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str, tmp_path: Path
) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(20)
    daemon = make_daemon(ack="on_complete", start=False)
    daemon.extra_env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    daemon.start()
    assert b"READY=1" in notify.recv(4096)
    broker.publish(f"{prefix}.in", [{"n": i, "sleep": 1.0} for i in range(4)])
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 4, 10)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0
    assert len(daemon.completed()) == 4
    assert broker.count(f"{prefix}.in") == 0
    assert "daemon stopped" in daemon.log_text()
    assert b"STOPPING=1" in notify.recv(4096)
    notify.close()


def test_a_second_sigterm_exits_at_once(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon(ack="on_complete", shutdown_timeout=30)
    broker.publish(f"{prefix}.in", [{"n": 1, "sleep": 20.0}])
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 1, 10)
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: "draining" in daemon.log_text(), 10)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(5) == EXIT_FORCED


def test_jobs_cut_by_the_shutdown_timeout_resume_on_next_start(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon(ack="on_complete", shutdown_timeout=0.2)
    broker.publish(f"{prefix}.in", [{"n": i, "sleep": 2.0} for i in range(3)])
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 3, 10)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    # The deliveries were nacked with requeue; the jobs wait in the store.
    daemon.start()
    wait_for(lambda: len(daemon.completed()) == 3, 20)
    wait_for(lambda: broker.count(f"{prefix}.in") == 0, 10)
    assert len(daemon.jobs()) == 3, "a requeued message must not start a second job"


def test_sigkill_mid_load_then_restart_loses_nothing_and_duplicates_nothing(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    total = 300
    broker.publish_many(f"{prefix}.in", [({"n": i}, f"msg-{i}") for i in range(total)])
    wait_for(lambda: len(daemon.jobs()) >= total // 4, 20)
    daemon.kill()
    daemon.start()
    wait_for(lambda: len(daemon.completed()) == total, 60)
    jobs = daemon.jobs()
    assert len(jobs) == total
    assert Counter(j["dedupe_key"] for j in jobs) == Counter(f"msg-{i}" for i in range(total))
    results = sorted(json.loads(j["state"])["shared_data"]["result"] for j in jobs)
    assert results == [i + 3 for i in range(total)]
    wait_for(lambda: broker.count(f"{prefix}.in") == 0, 10)


def test_startup_with_the_broker_unreachable_keeps_timers_running_and_reports_unready(
    make_daemon: Callable[..., Daemon], prefix: str
) -> None:
    daemon = make_daemon(interval=0.3, url="amqp://guest:guest@127.0.0.1:1/", wait_ready=False)
    trigger = f"{prefix}-tick"
    wait_for(lambda: len(daemon.completed(trigger)) >= 2, 15)
    assert daemon.http("/healthz")[0] == 200
    status, body = daemon.http("/readyz")
    assert status == 503 and "amqp" in body
    assert daemon.metric("routilux_amqp_connected") == 0
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0


@pytest.mark.slow
def test_broker_restart_mid_load_resumes_consumption_without_loss(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    total = 200
    first = [({"n": i}, f"m-{i}") for i in range(total // 2)]
    broker.publish_many(f"{prefix}.in", first)
    wait_for(lambda: len(daemon.jobs()) >= 20, 20)
    try:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=30)
        wait_for(lambda: daemon.http("/readyz")[0] == 503, 10)
        assert daemon.metric("routilux_amqp_connected") == 0
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=60)
    broker.publish_many(f"{prefix}.in", [({"n": i}, f"m-{i}") for i in range(total // 2, total)])
    daemon.wait_ready(30)
    wait_for(lambda: len(daemon.completed()) == total, 30)
    assert len(daemon.jobs()) == total
    assert daemon.metric("routilux_amqp_connected") == 1
    wait_for(lambda: broker.count(f"{prefix}.in") == 0, 10)


def test_with_on_complete_a_crashed_replicas_messages_go_to_the_other(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    first = make_daemon(ack="on_complete", prefetch=5)
    second = make_daemon(ack="on_complete", prefetch=5)
    total = 10
    broker.publish_many(f"{prefix}.in", [({"n": i, "sleep": 1.0}, f"r-{i}") for i in range(total)])
    wait_for(lambda: first.metric("routilux_jobs_running", flow="chain") > 0, 10)
    first.kill()  # its unacked deliveries go back to the queue, then to the other replica

    def keys(daemon: Daemon) -> set[str]:
        return {j["dedupe_key"] for j in daemon.completed()}

    wait_for(lambda: keys(first) | keys(second) == {f"r-{i}" for i in range(total)}, 30)
    wait_for(lambda: broker.count(f"{prefix}.in") == 0, 10)
