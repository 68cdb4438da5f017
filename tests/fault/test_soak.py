"""Scenario 8: steady load plus an interval trigger for a while; nothing grows unboundedly.

Each second the test publishes ``rate`` messages and samples the daemon's RSS,
threads, open fds and the SQLite files' size. Afterwards it checks that every
message completed, that the timer kept firing, and that threads, fds and RSS in
the second half of the run stay at the first half's level. The SQLite store grows
with the jobs it keeps (``retention_days`` counts in days, so nothing expires
within a run); the test reports the bytes per job instead.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from faultbroker import Broker, bulk_publish, declare_queue, json_messages
from faultkit import FaultDaemon, Sampler, query, report, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

TICK_SECONDS = 0.5
#: Length of the long soak; ``FAULT_SOAK_SECONDS`` shortens or stretches it.
LONG_SECONDS = int(os.environ.get("FAULT_SOAK_SECONDS", "1800"))


def store_bytes(db: Path) -> int:
    """The store's size on disk: the database plus its WAL."""
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


@pytest.mark.parametrize(
    ("seconds", "rate", "rss_drift_kb"),
    [
        pytest.param(30, 50, 40_000, id="quick"),
        pytest.param(
            LONG_SECONDS,
            50,
            30_000,
            id="long",
            marks=[pytest.mark.soak, pytest.mark.timeout(LONG_SECONDS + 600)],
        ),
    ],
)
def test_steady_load_with_timers_grows_no_threads_fds_or_memory(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    amqp_url: str,
    prefix: str,
    queue: str,
    seconds: int,
    rate: int,
    rss_drift_kb: int,
) -> None:
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    daemon = make_daemon(threads=4, prefetch=16, interval=TICK_SECONDS)
    sampler = Sampler(daemon)
    sizes: list[int] = []
    sent: list[str] = []
    start = time.monotonic()

    def one_second() -> bool:
        batch = [f"{prefix}-{len(sent) + n}" for n in range(rate)]
        bulk_publish(amqp_url, queue, json_messages(batch, sleep=0.001))
        sent.extend(batch)
        sampler.sample()
        sizes.append(store_bytes(daemon.store))
        return time.monotonic() - start >= seconds

    wait_for(one_second, seconds + 120, interval=1.0)
    elapsed = time.monotonic() - start
    sql = "SELECT count(*) FROM jobs WHERE trigger = ? AND status = 'completed'"
    wait_for(lambda: query(daemon.store, sql, f"amqp:{queue}")[0][0] >= len(sent), 60, 0.2)
    rows = daemon.job_rows()
    by_trigger = Counter(r[3] for r in rows)
    assert {r[2] for r in rows if r[3] == f"amqp:{queue}"} == set(sent)
    assert by_trigger[f"amqp:{queue}"] == len(sent)
    ticks = by_trigger[f"{queue}.tick"]
    assert ticks >= 0.8 * elapsed / TICK_SECONDS, f"timer fired {ticks} times in {elapsed:.0f}s"
    assert set(Counter(r[1] for r in rows)) == {"completed"}
    assert broker.count(queue) == 0 and broker.count(f"{queue}.dlq") == 0
    half = len(sampler.samples) // 2
    first, second = sampler.samples[:half], sampler.samples[half:]

    def peak(part: list[tuple[float, dict[str, int]]], key: str) -> int:
        return max(v[key] for _, v in part)

    assert peak(second, "Threads") <= peak(first, "Threads") + 2
    assert peak(second, "fds") <= peak(first, "fds") + 2
    drift = peak(second, "VmRSS") - peak(first, "VmRSS")
    assert drift < rss_drift_kb, f"RSS drifted by {drift} kB"
    report(
        "soak",
        seconds=round(elapsed),
        messages=len(sent),
        ticks=ticks,
        completed=len(rows),
        lost=0,
        rss_first_half_peak_kb=peak(first, "VmRSS"),
        rss_second_half_peak_kb=peak(second, "VmRSS"),
        threads_first_second=f"{peak(first, 'Threads')}/{peak(second, 'Threads')}",
        fds_first_second=f"{peak(first, 'fds')}/{peak(second, 'fds')}",
        store_bytes_end=sizes[-1],
        store_bytes_per_job=round(sizes[-1] / max(1, len(rows))),
    )
