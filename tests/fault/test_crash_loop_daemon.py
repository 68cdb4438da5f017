"""Scenario 1: SIGKILL the daemon at random moments under load; nothing is lost or redone.

Messages for the 4-step ``steps4`` flow arrive in waves, one wave before each daemon
start; the daemon is SIGKILLed at a random moment (sometimes during start-up and
resume, usually while jobs run) and restarted, ``kills`` times, then runs to the
end. After every kill the test records what the store made durable and what the
steps did so far (marker lines). At the end it checks, exactly:

* every message sent is one job (``dedupe_key`` = message id), all ``completed``:
  zero lost, zero duplicated jobs, nothing left on the queue or dead-lettered;
* every step of every job ran; a step a checkpoint showed finished never ran
  again; each extra run of a step is explained by a kill at which that step had
  run but was not yet checkpointed finished (the at-least-once window, §3).

Set ``FAULT_SEED`` to replay a failure; the seed is in every assertion message.
"""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from faultbroker import Broker, bulk_publish, declare_queue, json_messages
from faultkit import FaultDaemon, durable_steps, report, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

STEPS = ("s1", "s2", "s3", "s4")


@dataclass
class KillRecord:
    """What one SIGKILL left behind."""

    done: set[tuple[str, str]]
    rerun: set[tuple[str, str]]
    runs: Counter[tuple[str, str]]


def kill_at_random(daemon: FaultDaemon, rng: random.Random) -> bool:
    """Start ``daemon`` and SIGKILL it at a random moment; False if it was not running."""
    if rng.random() < 0.2:  # during start-up, flow loading and resume
        daemon.start(wait_ready=False)
        delay = rng.uniform(0.05, 0.6)
    else:
        daemon.start()
        delay = rng.uniform(0.0, 0.25)
    assert daemon.proc is not None
    try:
        daemon.proc.wait(timeout=delay)
    except Exception:  # still running, the normal case
        daemon.kill()
        return True
    return False


def check_no_redo(kills: list[KillRecord], final: Counter[tuple[str, str]], seed: int) -> int:
    """Assert the at-least-once window was respected; returns how many step re-runs."""
    for k, rec in enumerate(kills):
        redone = sorted(key for key in rec.done if final[key] != rec.runs[key])
        assert redone == [], f"kill {k}: checkpointed steps ran again {redone[:5]} (seed {seed})"
        stray = sorted(key for key, n in rec.runs.items() if n and key not in rec.done | rec.rerun)
        assert stray == [], f"kill {k}: a step ran but no checkpoint keeps it {stray[:5]} ({seed})"
    allowed: Counter[tuple[str, str]] = Counter()
    for rec in kills:
        allowed.update(key for key, n in rec.runs.items() if n and key not in rec.done)
    extra = {key: n - 1 for key, n in final.items() if n > 1}
    unexplained = sorted(key for key, n in extra.items() if n > allowed[key])
    assert unexplained == [], f"steps repeated more than kills explain {unexplained[:5]} ({seed})"
    return sum(extra.values())


@pytest.mark.parametrize(
    ("messages", "kills"),
    [
        pytest.param(300, 5, id="quick"),
        pytest.param(2000, 50, id="long", marks=[pytest.mark.soak, pytest.mark.timeout(1800)]),
    ],
)
def test_sigkill_loop_under_load_loses_and_duplicates_nothing(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    amqp_url: str,
    prefix: str,
    queue: str,
    messages: int,
    kills: int,
) -> None:
    seed = int(os.environ.get("FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    ids = [f"m{n}-{uuid.uuid4().hex[:8]}" for n in range(messages)]
    waves = [ids[w :: kills + 1] for w in range(kills + 1)]
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    daemon = make_daemon(start=False)
    records: list[KillRecord] = []
    attempts = 0
    while len(records) < kills:
        if attempts <= kills:
            bulk_publish(amqp_url, queue, json_messages(waves[attempts]))
        attempts += 1
        if kill_at_random(daemon, rng):
            ran = daemon.marker_counts()  # the process is dead: this is final for the kill
            done, rerun = durable_steps(daemon.store, ran)
            records.append(KillRecord(done, rerun, ran))
        assert attempts < kills * 3, f"daemon kept exiting by itself (seed {seed})"
    for wave in waves[attempts:]:
        bulk_publish(amqp_url, queue, json_messages(wave))
    daemon.start()
    wait_for(lambda: daemon.status_counts().get("completed", 0) >= messages, 90, 0.2)
    check_outcome(daemon, broker, queue, ids, records, seed)


def check_outcome(
    daemon: FaultDaemon,
    broker: Broker,
    queue: str,
    ids: list[str],
    records: list[KillRecord],
    seed: int,
) -> None:
    rows = daemon.job_rows()
    assert sorted(r[2] for r in rows) == sorted(ids), f"lost or duplicated jobs (seed {seed})"
    assert Counter(r[1] for r in rows) == {"completed": len(ids)}, seed
    wait_for(lambda: broker.count(queue) == 0, 10)
    assert broker.count(f"{queue}.dlq") == 0
    final = daemon.marker_counts()
    missing = [(r[0], s) for r in rows for s in STEPS if final[(r[0], s)] == 0]
    assert missing == [], f"steps never ran {missing[:5]} (seed {seed})"
    reruns = check_no_redo(records, final, seed)
    duplicates = daemon.metric("routilux_messages_total", queue=queue, outcome="duplicate")
    report(
        "crash_loop",
        seed=seed,
        sent=len(ids),
        kills=len(records),
        jobs=len(rows),
        completed=len(rows),
        lost=0,
        duplicate_jobs=0,
        step_runs=sum(final.values()),
        step_reruns_in_window=reruns,
        redelivered_duplicates_last_run=int(duplicates),
    )
