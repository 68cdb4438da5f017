"""bench/daemon_stages.py runs end to end against a real broker and daemon."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import daemon_stages  # noqa: E402


def test_every_stage_is_timed_for_every_message(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_stages, "DEFAULT_URL", amqp_url)
    report = daemon_stages.measure(rate=100, seconds=1, warmup=10)
    stages, inside = report.split("Whole run")
    stages, slowest = stages.split("Slowest 1% of messages (1)")
    [titles, _, means] = [ln for ln in slowest.splitlines() if ln.startswith("|")]
    assert [t.strip() for t in titles.strip("|").split("|")] == [
        t for t, _, _ in daemon_stages.STAGES
    ]
    *parts, total = [float(cell) for cell in means.strip("|").split("|")]
    assert all(part >= 0 for part in parts) and abs(sum(parts) - total) < 0.05
    rows = [line for line in stages.splitlines() if line.startswith("| ") and "stage" not in line]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [
        t for t, _, _ in daemon_stages.STAGES
    ]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[-1] == "100", row  # every message has both ends of every stage
        assert all(float(cell) >= 0 for cell in cells[1:4]), row
    probes = [ln for ln in inside.splitlines() if ln.startswith("| ") and "inside" not in ln]
    assert [row.split(" | ")[0].lstrip("| ") for row in probes] == [
        title for _, title in daemon_stages.INSIDE
    ]
    for row in probes[:4]:  # batches and writer transactions happened (GC may not have)
        assert int(row.strip("|").split("|")[-1]) > 0, row
