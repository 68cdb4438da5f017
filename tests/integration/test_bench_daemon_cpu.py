"""bench/daemon_cpu.py measures a real daemon against a real broker."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import daemon_cpu  # noqa: E402


def test_cpu_per_message_and_rate_of_one_run(amqp_url: str) -> None:
    figures = daemon_cpu.measure(daemon_cpu.REPO, 3000, amqp_url)
    assert 0 < figures["cpu_us_per_msg"] < 100_000
    assert 0 < figures["loop_us_per_msg"] < figures["cpu_us_per_msg"]
    assert figures["msgs_per_s"] > 0
