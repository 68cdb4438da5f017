"""Scenario 5: a job whose step kills the process is quarantined; the others flow on.

``{"crash": true}`` makes step ``s2`` call ``os._exit(3)``. Every start resumes
that job and dies again. Once it is known to be stalled it is started on probation
(one stalled job at a time, recorded durably first), so each further death is
charged to it alone; after ``store.max_resumes`` charges it is marked failed
("quarantined") and the daemon stays up. The test restarts the daemon whenever it
died, exactly as systemd's ``Restart=always`` would, and counts. Jobs resumed beside
it are never quarantined with it, wherever the poison message sits in the queue.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from faultbroker import Broker, bulk_publish, declare_queue, json_messages
from faultkit import FaultDaemon, report, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

MAX_RESUMES = 3
#: Restarts allowed before the test calls it an endless crash loop.
MAX_RESTARTS = 12


def settled(daemon: FaultDaemon, total: int) -> bool:
    """Every job is terminal, or the daemon died (and must be restarted)."""
    if not daemon.alive():
        return True
    counts = daemon.status_counts()
    return counts.get("completed", 0) + counts.get("failed", 0) >= total


def run_poison_scenario(
    make_daemon: Callable[..., FaultDaemon],
    amqp_url: str,
    prefix: str,
    queue: str,
    *,
    before: int = 0,
    slow_neighbours: int = 0,
) -> tuple[FaultDaemon, list[str], str, int]:
    """60 good messages and one poison message; restart after every crash.

    ``before`` good messages are queued ahead of the poison one, the last
    ``slow_neighbours`` of them spending 1 s in ``s2`` (so they are still in
    flight whenever the poison job kills the process); the rest come after it.
    """
    good = [uuid.uuid4().hex for _ in range(60)]
    poison_id = f"poison-{uuid.uuid4().hex[:8]}"
    poison = [(json.dumps({"crash": True}).encode(), {"message_id": poison_id})]
    fast = before - slow_neighbours
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    bulk_publish(amqp_url, queue, json_messages(good[:fast]))
    bulk_publish(amqp_url, queue, json_messages(good[fast:before], sleep=1.0))
    bulk_publish(amqp_url, queue, poison)
    bulk_publish(amqp_url, queue, json_messages(good[before:]))
    daemon = make_daemon(start=False, max_resumes=MAX_RESUMES)
    crashes = 0
    for _ in range(MAX_RESTARTS):
        daemon.start(wait_ready=False)
        wait_for(lambda: settled(daemon, len(good) + 1), 30, 0.1)
        if daemon.alive():
            break
        assert daemon.proc is not None and daemon.proc.returncode == 3
        crashes += 1
    assert daemon.alive(), f"still crash-looping after {crashes} crashes"
    daemon.wait_ready(10)
    return daemon, good, poison_id, crashes


def test_a_job_that_crashes_the_process_is_quarantined_and_the_daemon_goes_on(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    amqp_url: str,
    prefix: str,
    queue: str,
) -> None:
    daemon, good, poison_id, crashes = run_poison_scenario(make_daemon, amqp_url, prefix, queue)
    rows = {r[2]: r for r in daemon.job_rows("job_id, status, dedupe_key, error")}
    assert sorted(rows) == sorted([*good, poison_id]), "a message was lost or duplicated"
    assert rows[poison_id][1] == "failed"
    assert "quarantined" in (rows[poison_id][3] or "")
    assert {rows[k][1] for k in good} == {"completed"}, "an innocent job was failed"
    # The first delivery, whose job starts before its claim commits and usually dies
    # before it does (the redelivery is claimed first); the first run on record; the
    # first restart, when nothing is known to be stalled yet; then one death per
    # charge while the job is the probe, until it is quarantined.
    assert crashes in (MAX_RESUMES + 2, MAX_RESUMES + 3)
    bulk_publish(amqp_url, queue, json_messages(["after-quarantine"]))
    wait_for(lambda: daemon.status_counts().get("completed", 0) >= 1, 20)
    wait_for(lambda: ("after-quarantine",) in daemon.job_rows("dedupe_key"), 20)
    wait_for(lambda: broker.count(queue) == 0, 10)
    assert broker.count(f"{queue}.dlq") == 0
    innocent = sorted(k for k in good if rows[k][1] == "failed")
    report(
        "poison_flow",
        sent=len(good) + 2,
        crashes=crashes,
        max_resumes=MAX_RESUMES,
        poison_quarantined=1,
        innocent_quarantined=len(innocent),
        completed=sum(1 for k in good if rows[k][1] == "completed") + 1,
        lost=0,
    )


def test_jobs_resumed_beside_a_poison_job_are_not_quarantined(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    amqp_url: str,
    prefix: str,
    queue: str,
) -> None:
    daemon, good, _, _ = run_poison_scenario(
        make_daemon, amqp_url, prefix, queue, before=30, slow_neighbours=3
    )
    rows = {r[2]: r for r in daemon.job_rows("job_id, status, dedupe_key, error")}
    failed = sorted((k, rows[k][3]) for k in good if rows[k][1] != "completed")
    assert failed == []
