"""bench/daemon_cpu.py measures a real daemon against a real broker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import daemon_cpu  # noqa: E402


def test_cpu_per_message_and_rate_of_one_run(amqp_url: str) -> None:
    figures = daemon_cpu.measure(daemon_cpu.REPO, 3000, amqp_url, prefetch=50)
    assert 0 < figures["cpu_us_per_msg"] < 100_000
    assert 0 < figures["loop_us_per_msg"] < figures["cpu_us_per_msg"]
    # the AMQP receiver process did the frame reading, counted in the total
    assert 0 < figures["receiver_us_per_msg"] < figures["cpu_us_per_msg"]
    assert 0 < figures["receiver_cores"] <= (os.cpu_count() or 1) + 0.1
    assert figures["msgs_per_s"] > 0
    # one GIL: the daemon keeps at most about one core busy (plus what SQLite and
    # the kernel do outside it); os.cpu_count() bounds every process
    assert 0 < figures["daemon_cores"] <= (os.cpu_count() or 1) + 0.1
    if daemon_cpu.broker_pid() is not None:  # a local RabbitMQ: measured (clock ticks
        # of 10 ms can round a short run's share down to 0)
        assert 0 <= figures["broker_cores"] <= (os.cpu_count() or 1) + 0.1
