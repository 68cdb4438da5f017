"""Scenario 3: SIGTERM under load drains, exits 0 in time, and a restart finishes the rest.

Two cases: the running jobs fit in the drain deadline (nothing runs twice), and
they do not (the process still exits 0 soon after the deadline; the cut jobs
resume on restart, re-running only their in-flight step).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from faultbroker import Broker, bulk_publish, declare_queue, json_messages
from faultkit import FaultDaemon, report, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

#: Seconds the daemon may take past ``shutdown_timeout``: settling unacked deliveries
#: (service.SETTLE_TIMEOUT is 5 s at most) and closing; far less in practice.
EXIT_MARGIN = 6.0


@pytest.mark.parametrize(
    ("messages", "sleep", "shutdown_timeout"),
    [
        pytest.param(60, 0.2, 10.0, id="jobs-fit-the-deadline"),
        pytest.param(8, 3.0, 1.0, id="jobs-outlast-the-deadline"),
    ],
)
def test_sigterm_under_load_exits_zero_in_time_and_restart_completes_everything(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    amqp_url: str,
    prefix: str,
    queue: str,
    messages: int,
    sleep: float,
    shutdown_timeout: float,
) -> None:
    ids = [uuid.uuid4().hex for _ in range(messages)]
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    bulk_publish(amqp_url, queue, json_messages(ids, sleep=sleep))
    daemon = make_daemon(shutdown_timeout=shutdown_timeout, threads=4, prefetch=8)
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="steps4") >= 4, 20)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code = daemon.wait_exit(shutdown_timeout + EXIT_MARGIN + 5)
    took = time.monotonic() - started
    assert code == 0, daemon.log_text()[-3000:]
    assert took <= shutdown_timeout + EXIT_MARGIN, f"drain took {took:.1f}s"
    at_exit = Counter(daemon.status_counts())
    daemon.start()
    wait_for(lambda: daemon.status_counts().get("completed", 0) >= messages, 60, 0.2)
    rows = daemon.job_rows()
    assert sorted(r[2] for r in rows) == sorted(ids)
    assert Counter(r[1] for r in rows) == {"completed": messages}
    assert broker.count(queue) == 0 and broker.count(f"{queue}.dlq") == 0
    runs = daemon.marker_counts()
    assert all(runs[(r[0], s)] >= 1 for r in rows for s in ("s1", "s2", "s3", "s4"))
    repeated = {key: n for key, n in runs.items() if n > 1}
    if sleep < shutdown_timeout:
        assert repeated == {}, "a drained job ran a step twice"
    else:  # only the step cut in flight (the slow s2) and those after it may repeat
        assert {step for _, step in repeated} <= {"s2", "s3", "s4"}
    report(
        "sigterm_drain",
        case=f"sleep={sleep},shutdown_timeout={shutdown_timeout}",
        sent=messages,
        exit_code=code,
        exit_seconds=round(took, 2),
        unfinished_at_exit=at_exit.get("running", 0) + at_exit.get("pending", 0),
        completed_after_restart=len(rows),
        lost=0,
        duplicate_jobs=0,
        repeated_steps=sum(n - 1 for n in repeated.values()),
    )
