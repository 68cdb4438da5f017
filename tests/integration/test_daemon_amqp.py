"""The daemon subprocess against a real RabbitMQ: messages, duplicates, dead letters, replies."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Callable

import pytest

from .daemon_harness import Broker, Daemon, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


def test_each_message_starts_one_job_that_lands_in_the_store(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    broker.publish(f"{prefix}.in", [{"n": i} for i in range(20)])
    done = wait_for(lambda: len(daemon.completed()) == 20 and daemon.completed(), 20)
    assert {j["trigger"] for j in done} == {f"amqp:{prefix}.in"}
    assert {j["flow_id"] for j in done} == {"chain"}
    results = sorted(json.loads(j["state"])["shared_data"]["result"] for j in done)
    assert results == [i + 3 for i in range(20)]
    wait_for(
        lambda: (
            daemon.metric("routilux_jobs_finished_total", flow="chain", status="completed") == 20
        ),
        5,
    )
    assert daemon.metric("routilux_messages_total", queue=f"{prefix}.in", outcome="accepted") == 20
    assert daemon.metric("routilux_jobs_started_total", flow="chain") == 20
    assert (
        daemon.metric("routilux_activations_total", flow="chain", routine="second", outcome="ok")
        == 20
    )
    assert daemon.metric("routilux_amqp_connected") == 1
    assert daemon.metric("routilux_jobs_running", flow="chain") == 0
    assert daemon.metric("routilux_job_duration_seconds_count", flow="chain") == 20
    assert daemon.metric("routilux_checkpoint_seconds_count") == 20
    assert daemon.metric("routilux_oldest_pending_job_age_seconds") == 0
    assert broker.count(f"{prefix}.in") == 0
    # Job log lines are written in batches, up to 20 ms after the job ends.
    wait_for(lambda: "job end id=" in daemon.log_text(), 5)
    assert "trigger=amqp:" in daemon.log_text()


def test_a_repeated_message_id_runs_once(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    broker.publish_many(f"{prefix}.in", [({"n": 1}, "same-id")] * 5 + [({"n": 2}, "other-id")] * 3)
    queue = f"{prefix}.in"
    wait_for(
        lambda: daemon.metric("routilux_messages_total", queue=queue, outcome="duplicate") == 6, 20
    )
    assert daemon.metric("routilux_messages_total", queue=queue, outcome="accepted") == 2
    wait_for(lambda: len(daemon.completed()) == 2, 10)
    assert len(daemon.jobs()) == 2
    assert {j["dedupe_key"] for j in daemon.jobs()} == {"same-id", "other-id"}
    wait_for(lambda: broker.count(queue) == 0, 5)


def test_a_body_that_is_not_a_json_object_is_dead_lettered_with_the_reason(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    queue = f"{prefix}.in"
    broker.publish(queue, [b"not json", b"[1, 2]"])
    broker.publish(queue, [{"n": 1}])
    wait_for(lambda: broker.count(f"{queue}.dlq") == 2, 20)
    dead = broker.drain(f"{queue}.dlq")
    reasons = sorted(str(m.headers["x-routilux-error"]) for m in dead)
    assert "not valid JSON" in reasons[0] or "not valid JSON" in reasons[1]
    assert any("must be a JSON object, got list" in r for r in reasons)
    assert sorted(m.body for m in dead) == [b"[1, 2]", b"not json"]
    wait_for(lambda: len(daemon.completed()) == 1, 10)
    assert daemon.http("/readyz")[0] == 200
    assert daemon.metric("routilux_messages_total", queue=queue, outcome="rejected") == 2
    assert broker.count(queue) == 0


def test_reply_to_receives_the_result_with_the_correlation_id(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    make_daemon()
    replies = f"{prefix}.replies"
    broker.declare(replies)
    correlation = uuid.uuid4().hex
    broker.publish(f"{prefix}.in", [{"n": 10}], reply_to=replies, correlation_id=correlation)
    wait_for(lambda: broker.count(replies) == 1, 20)
    (reply,) = broker.drain(replies)
    assert reply.correlation_id == correlation
    body = json.loads(reply.body)
    assert body["flow"] == "chain" and body["status"] == "completed"
    assert body["error"] is None and body["shared_data"] == {"result": 13}
    assert set(body) == {"job_id", "flow", "status", "error", "shared_data"}


def test_consumption_resumes_after_the_broker_cancels_the_consumer(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    queue = f"{prefix}.in"
    broker.publish(queue, [{"n": 1}])
    wait_for(lambda: len(daemon.completed()) == 1, 10)
    broker.delete(queue)  # the broker sends basic.cancel to the daemon's consumer

    def redeclared() -> bool:
        try:
            broker.count(queue)
        except Exception:
            return False
        return True

    wait_for(redeclared, 15, interval=0.2)
    broker.publish(queue, [{"n": 2}])
    wait_for(lambda: len(daemon.completed()) == 2, 15)
    daemon.wait_ready(10)


def unacked(queue: str) -> int:
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "name", "messages_unacknowledged"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for line in out.splitlines():
        name, _, count = line.rpartition("\t")
        if name.strip() == queue:
            return int(count)
    raise AssertionError(f"queue {queue} not listed")


def test_on_complete_keeps_the_message_unacked_until_the_job_ends(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon(ack="on_complete")
    queue = f"{prefix}.in"
    # Long enough for rabbitmqctl (an Erlang VM start, 1-2 s here) to look mid-job.
    broker.publish(queue, [{"n": 1, "sleep": 5.0}])
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 1, 10)
    assert unacked(queue) == 1
    wait_for(lambda: len(daemon.completed()) == 1, 15)
    wait_for(lambda: unacked(queue) == 0, 10)


def test_a_queue_declared_with_other_arguments_stops_the_daemon_naming_it(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    queue = f"{prefix}.in"
    broker.declare(queue)  # durable, but without the dead-letter arguments
    daemon = make_daemon(wait_ready=False)
    assert daemon.wait_exit(30) == 1
    assert f"queue '{queue}' exists with different arguments" in daemon.log_text()


def test_a_reply_owed_by_a_job_cut_by_sigkill_is_sent_once_after_restart(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    replies = f"{prefix}.replies"
    broker.declare(replies)
    broker.publish(f"{prefix}.in", [{"n": 1, "sleep": 1.5}], reply_to=replies, correlation_id="c1")
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 1, 10)
    daemon.kill()
    daemon.start()
    wait_for(lambda: len(daemon.completed()) == 1, 20)
    wait_for(lambda: broker.count(replies) >= 1, 10)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0
    (reply,) = broker.drain(replies)
    assert reply.correlation_id == "c1"
    assert json.loads(reply.body)["shared_data"] == {"result": 4}
