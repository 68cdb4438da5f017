"""Scenario 7: a deep backlog for a slow flow. Memory stays flat, prefetch bounds the work.

Every message is queued before the daemon starts. While it works through them the
test samples, about twice a second: the daemon's RSS, threads and fds, the
broker's ready/unacked counts and the completed jobs. It checks that unacked
deliveries never exceed ``prefetch`` (the broker holds the backlog, not the
daemon), that jobs in flight never exceed what the daemon admits, that RSS in the
second half of the run stays within a small band of the first half, and that
throughput is steady (no sampling interval far below the median).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import Counter
from collections.abc import Callable

import pytest
from faultbroker import Broker, bulk_publish, declare_queue, json_messages
from faultkit import FaultDaemon, Sampler, report, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

PREFETCH = 16
THREADS = 4
#: RSS the second half of the run may add over the first half's peak (kB). The
#: Runtime keeps up to 10,000 finished JobStates (``max_finished_jobs``), so RSS
#: rises until that cap is reached and is flat after it: the quick run (5,000 jobs)
#: is still filling it, the long run (100,000) is far past it.
RSS_DRIFT_QUICK_KB = 60_000
RSS_DRIFT_LONG_KB = 30_000


def rates(points: list[tuple[float, int]]) -> list[float]:
    """Completions per second between consecutive samples (first and last dropped)."""
    per_interval = [(n2 - n1) / (t2 - t1) for (t1, n1), (t2, n2) in itertools.pairwise(points)]
    return per_interval[1:-1]


@pytest.mark.parametrize(
    ("messages", "sleep", "drift_limit"),
    [
        pytest.param(5_000, 0.004, RSS_DRIFT_QUICK_KB, id="quick"),
        pytest.param(
            100_000,
            0.002,
            RSS_DRIFT_LONG_KB,
            id="long",
            marks=[pytest.mark.soak, pytest.mark.timeout(3600)],
        ),
    ],
)
def test_a_deep_backlog_keeps_memory_flat_and_in_flight_work_bounded(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    amqp_url: str,
    prefix: str,
    queue: str,
    messages: int,
    sleep: float,
    drift_limit: int,
) -> None:
    ids = [f"{prefix}-{n}" for n in range(messages)]
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    bulk_publish(amqp_url, queue, json_messages(ids, sleep=sleep))
    daemon = make_daemon(threads=THREADS, prefetch=PREFETCH)
    sampler = Sampler(daemon)
    progress: list[tuple[float, int]] = []
    unacked: list[int] = []
    running: list[float] = []

    def sample() -> bool:
        sampler.sample()
        done = daemon.status_counts().get("completed", 0)
        progress.append((time.monotonic(), done))
        unacked.append(broker.counts(queue)[1])
        running.append(daemon.metric("routilux_jobs_running", flow="steps4"))
        return done >= messages

    wait_for(sample, 60 + messages * sleep * 2, interval=0.5)
    rows = daemon.job_rows()
    assert len(rows) == messages and {r[2] for r in rows} == set(ids)
    assert Counter(r[1] for r in rows) == {"completed": messages}
    assert broker.count(queue) == 0 and broker.count(f"{queue}.dlq") == 0
    assert max(unacked) <= PREFETCH, f"unacked deliveries above prefetch: {max(unacked)}"
    # The daemon admits max(prefetch, 2 x threads) jobs at once (service.py); more is a leak.
    admitted = max(PREFETCH, 2 * THREADS)
    assert max(running) <= admitted, f"more jobs in flight than admitted: {max(running)}"
    half = len(sampler.samples) // 2
    first = max(v["VmRSS"] for _, v in sampler.samples[:half])
    second = max(v["VmRSS"] for _, v in sampler.samples[half:])
    assert second - first < drift_limit, f"RSS drifted {first} -> {second} kB"
    window_rates = rates(progress)
    median = statistics.median(window_rates)
    assert min(window_rates) >= 0.3 * median, f"throughput dipped: {window_rates}"
    elapsed = progress[-1][0] - progress[0][0]
    report(
        "backpressure",
        sent=messages,
        completed=len(rows),
        lost=0,
        step_sleep_s=sleep,
        seconds=round(elapsed, 1),
        jobs_per_s=round(messages / elapsed, 1),
        window_rates_min_median_max=(
            f"{min(window_rates):.0f}/{median:.0f}/{max(window_rates):.0f}"
        ),
        max_unacked=max(unacked),
        prefetch=PREFETCH,
        max_running=int(max(running)),
        rss_first_half_peak_kb=first,
        rss_second_half_peak_kb=second,
        rss_peak_kb=sampler.peak("VmRSS"),
        threads_peak=sampler.peak("Threads"),
        fds_peak=sampler.peak("fds"),
    )
