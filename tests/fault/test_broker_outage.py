"""Scenario 2: the broker goes away mid-load (``rabbitmqctl stop_app``) and comes back.

The outage is made on a RabbitMQ node of this suite's own (fixture
``private_broker``), never on the shared broker. While it is down the daemon must
stay alive (``/healthz`` 200) and report ``/readyz`` 503; after ``start_app`` it
must reconnect by itself and finish every message: each one exactly one completed
job, nothing left on the queue, nothing dead-lettered. Deliveries cut by the
outage come back as redeliveries and are counted as ``duplicate`` (no new job).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from faultbroker import Broker, PrivateBroker, broker_up, bulk_publish, declare_queue, json_messages
from faultkit import FaultDaemon, report, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]


def outage(node: PrivateBroker, daemon: FaultDaemon, seconds: float) -> Counter[str]:
    """Stop the broker app for ``seconds``, sampling the daemon's probes meanwhile.

    Always restarts the app and waits for the broker to accept connections again.
    Returns how often each ``ready=<code>`` / ``health=<code>`` was seen.
    """
    seen: Counter[str] = Counter()
    node.ctl("stop_app")
    try:
        wait_for(lambda: daemon.http("/readyz")[0] == 503, 15)
        end = time.monotonic() + seconds

        def sample_until_end() -> bool:
            seen[f"ready={daemon.http('/readyz')[0]}"] += 1
            seen[f"health={daemon.http('/healthz')[0]}"] += 1
            return time.monotonic() >= end

        wait_for(sample_until_end, seconds + 10, interval=0.2)
    finally:
        node.ctl("start_app")
        wait_for(lambda: broker_up(node.url), 60, interval=0.5)
    return seen


@pytest.mark.parametrize(
    ("messages", "outages", "seconds"),
    [
        pytest.param(600, 1, 5.0, id="quick"),
        pytest.param(2000, 2, 10.0, id="long", marks=[pytest.mark.soak, pytest.mark.timeout(900)]),
    ],
)
def test_broker_outage_mid_load_loses_nothing_and_recovers_by_itself(
    make_daemon: Callable[..., FaultDaemon],
    private_broker: PrivateBroker,
    prefix: str,
    queue: str,
    messages: int,
    outages: int,
    seconds: float,
) -> None:
    url = private_broker.url
    ids = [uuid.uuid4().hex for _ in range(messages)]
    declare_queue(url, queue, f"{prefix}.dlx")
    bulk_publish(url, queue, json_messages(ids, sleep=0.02))
    daemon = make_daemon(url=url, threads=4, prefetch=8)
    seen: Counter[str] = Counter()
    done_at_outage = []
    for k in range(outages):
        target = messages * (k + 1) // (outages + 2)
        wait_for(lambda t=target: daemon.status_counts().get("completed", 0) >= t, 60, 0.1)
        done_at_outage.append(daemon.status_counts().get("completed", 0))
        assert done_at_outage[-1] < messages, "load finished before the outage"
        seen += outage(private_broker, daemon, seconds)
        assert daemon.alive(), daemon.log_text()[-3000:]
        daemon.wait_ready(30)
    wait_for(lambda: daemon.status_counts().get("completed", 0) >= messages, 120, 0.2)
    rows = daemon.job_rows()
    assert sorted(r[2] for r in rows) == sorted(ids), "lost or duplicated jobs"
    assert Counter(r[1] for r in rows) == {"completed": messages}
    helper = Broker(url, private_broker.node)
    wait_for(lambda: helper.count(queue) == 0, 10)
    assert helper.count(f"{queue}.dlq") == 0
    assert seen["health=200"] == sum(v for k, v in seen.items() if k.startswith("health="))
    assert seen["ready=200"] == 0, f"ready during the outage: {seen}"
    report(
        "broker_outage",
        sent=messages,
        outages=outages,
        outage_seconds=seconds,
        completed_before_each_outage=done_at_outage,
        completed=len(rows),
        lost=0,
        duplicate_jobs=0,
        readyz_samples_during_outage=dict(seen),
        redelivered_as_duplicate=int(
            daemon.metric("routilux_messages_total", queue=queue, outcome="duplicate")
        ),
    )
