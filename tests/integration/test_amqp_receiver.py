"""The AMQP receiver process: it dies with the daemon, is replaced when it dies alone,
and outlives the SIGTERM a service manager sends the whole group, so the drain's
acks still reach the broker."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from .daemon_harness import Broker, Daemon, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited, only its parent has not reaped it


def test_the_receiver_exits_with_the_daemon_and_the_broker_gets_its_messages_back(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon(ack="on_complete")
    queue = f"{prefix}.in"
    receiver = wait_for(daemon.receiver_pid, 10)
    broker.publish(queue, [{"n": 1, "sleep": 30}])
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 1, 10)
    daemon.kill()  # SIGKILL: the daemon's end of the socket pair closes with it
    wait_for(lambda: not _alive(receiver), 10)
    wait_for(lambda: broker.count(queue) == 1, 10)  # unacked, so requeued


def test_a_killed_receiver_is_replaced_and_no_message_is_lost_or_run_twice(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    queue = f"{prefix}.in"
    first = wait_for(daemon.receiver_pid, 10)
    broker.publish(queue, [{"n": i} for i in range(200)])
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: daemon.http("/readyz")[0] == 503, 5)
    wait_for(lambda: daemon.http("/readyz")[0] == 200, 20)
    second = daemon.receiver_pid()
    assert second is not None and second != first
    broker.publish(queue, [{"n": i} for i in range(200, 300)])
    wait_for(lambda: len(daemon.completed()) == 300, 30)
    keys = [job["dedupe_key"] for job in daemon.jobs()]
    assert len(keys) == len(set(keys)) == 300
    wait_for(lambda: broker.count(queue) == 0, 10)
    assert "amqp receiver exited" in daemon.log_text()


def test_sigterm_to_daemon_and_receiver_together_still_acks_what_the_drain_finished(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    # systemd's default KillMode sends SIGTERM to every process of the unit at once
    daemon = make_daemon(ack="on_complete")
    queue = f"{prefix}.in"
    receiver = wait_for(daemon.receiver_pid, 10)
    broker.publish(queue, [{"n": 1, "sleep": 1.0}])
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 1, 10)
    os.kill(receiver, signal.SIGTERM)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    assert len(daemon.completed()) == 1
    assert broker.count(queue) == 0  # acked after the job ended, through the receiver
    wait_for(lambda: not _alive(receiver), 10)
