"""Smoke tests for bench/: the helpers catch what they claim, the drivers run small."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import floor  # noqa: E402
import runtime_bench  # noqa: E402


def test_ledger_reports_missing_duplicate_and_foreign_items() -> None:
    ledger = common.Ledger()
    ledger.record("d", "j1", 1)
    ledger.record("d", "j1", 1)
    ledger.record("d", "j1", 3)
    problems = ledger.problems({1: "j1", 2: "j2", 3: "j3"}, "d")
    assert problems == [
        "1 items never reached the last routine",
        "1 items reached the last routine more than once",
        "1 items handled under a foreign job",
    ]


def test_latch_wakes_the_waiter_when_counted_down_from_other_threads() -> None:
    latch = common.Latch(3)
    threads = [threading.Thread(target=latch.count_down) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert latch.wait(5)
    assert not common.Latch(1).wait(0.01)


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    assert common.paired_ratio([2, 4, 9], [1, 1, 3]) == 3
    assert common.paired_ratio([], []) != common.paired_ratio([], [])  # NaN


@pytest.mark.parametrize("driver", [floor, runtime_bench])
def test_drivers_run_every_workload_small_and_pass_their_checks(driver: object) -> None:
    workloads = driver.WORKLOADS  # type: ignore[attr-defined]
    results = {
        "w1": workloads["w1"](jobs=50, threads=2, warmup=5),
        "w2": workloads["w2"](items=100, batch=10, threads=2, repeat=1),
        "w3": workloads["w3"](samples=3, threads=2, warmup=1),
    }
    for name, result in results.items():
        assert result["ok"], (name, result["problems"])


def test_ensure_venv_keeps_a_venv_whose_probe_answers(tmp_path: Path) -> None:
    venv = tmp_path / "kept"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    marker = venv / "marker"
    marker.write_text("made before")
    python = common.ensure_venv(venv, "unused-requirement", "print('ready')", "ready")
    assert python == venv / "bin" / "python"
    assert marker.read_text() == "made before"  # not recreated, nothing installed


def test_ensure_venv_names_the_step_that_failed(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a venv cannot be made below a file")
    with pytest.raises(common.BenchError, match=r"-m venv --clear .*failed"):
        common.ensure_venv(blocker / "venv", "unused-requirement", "print('x')", "x")
