"""Kill a process running 300 checkpointed jobs with SIGKILL 20 times; nothing is lost or redone.

After every kill the test reads what the store made durable and how often each step
has run so far (each step fsyncs one log line per run). At the end it checks that
every job completed exactly once, that no step ran again once a checkpoint showed it
done, and that a step ran without being checkpointed done only when the last
checkpoint had its activation, or one upstream of it, in flight (the at-least-once
window of DESIGN.md §3).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHILD = Path(__file__).with_name("crash_child.py")
STEPS = ("s1", "s2", "s3", "s4")
JOBS = 300
KILLS = 20


@dataclass
class Durable:
    """What one kill left behind."""

    done: set[tuple[str, str]]  # (job_id, step) checkpointed as finished
    in_flight: set[tuple[str, str]]  # (job_id, step) the checkpoint would run again
    runs: Counter[tuple[str, str]]  # step runs logged so far


def read_runs(log_dir: Path) -> Counter[tuple[str, str]]:
    runs: Counter[tuple[str, str]] = Counter()
    for step in STEPS:
        path = log_dir / f"{step}.log"
        if path.exists():
            runs.update((job, step) for job in path.read_text().split())
    return runs


def read_durable(db: Path, log_dir: Path) -> Durable:
    done: set[tuple[str, str]] = set()
    in_flight: set[tuple[str, str]] = set()
    conn = sqlite3.connect(db)
    try:
        has_jobs = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone()
        rows = conn.execute("SELECT job_id, state FROM jobs").fetchall() if has_jobs else []
    finally:
        conn.close()
    for job_id, raw in rows:
        if raw is None:  # claimed, never checkpointed: resume starts it from s1
            in_flight.add((job_id, "s1"))
            continue
        state: dict[str, Any] = json.loads(raw)
        done.update((job_id, rid) for rid, st in state["routine_states"].items() if st.get("done"))
        pending = state["pending"]
        in_flight.update((job_id, a["routine_id"]) for a in pending["activations"])
        in_flight.update(
            (job_id, rid) for rid, slots in pending["slots"].items() if any(slots.values())
        )
    return Durable(done, in_flight, read_runs(log_dir))


def downstream_of_in_flight(durable: Durable, job_id: str, step: str) -> bool:
    """Whether resuming the checkpoint re-creates ``step``: it is in flight, or after one.

    The checkpoint may lag behind the steps that ran (snapshots are committed in
    groups); resuming re-runs the in-flight activation, whose emits re-run the rest.
    """
    index = STEPS.index(step)
    return any((job_id, s) in durable.in_flight for s in STEPS[: index + 1])


class Child:
    """One run of crash_child.py whose stdout lines are collected by a reader thread."""

    def __init__(self, db: Path, log_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), str(log_dir), str(JOBS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = threading.Event()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("READY"):
                self.ready.set()
        self.proc.stdout.close()
        self.ready.set()  # EOF: the child exited

    def kill_after(self, delay: float) -> bool:
        """SIGKILL the child after ``delay`` s unless it exits first; True if killed."""
        try:
            self.proc.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            killed = True
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        return killed

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return code


def test_sigkill_loop_loses_no_job_and_redoes_no_checkpointed_step(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_LOOP_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    db, log_dir = tmp_path / "jobs.db", tmp_path / "logs"
    log_dir.mkdir()
    kills: list[Durable] = []
    while len(kills) < KILLS:
        child = Child(db, log_dir)
        if rng.random() < 0.25:  # sometimes during start-up and resume
            delay = rng.uniform(0.05, 0.4)
        else:
            assert child.ready.wait(30), f"child never got ready (seed {seed})"
            delay = rng.uniform(0.0, 0.06)
        if child.kill_after(delay):
            kills.append(read_durable(db, log_dir))
    child = Child(db, log_dir)
    assert child.finish(timeout=60) == 0, f"final run failed: {child.lines} (seed {seed})"
    assert child.lines[-1] == "DONE finished=True closed=True"
    check_outcome(db, log_dir, kills, seed)


def conn_errors(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT job_id, error FROM jobs WHERE status != 'completed'").fetchall()
    finally:
        conn.close()


def check_outcome(db: Path, log_dir: Path, kills: list[Durable], seed: int) -> None:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT job_id, status, dedupe_key FROM jobs").fetchall()
    conn.close()
    assert sorted(r[2] for r in rows) == sorted(f"key-{i}" for i in range(JOBS)), seed
    statuses = Counter(r[1] for r in rows)
    assert statuses == {"completed": JOBS}, (seed, statuses, conn_errors(db))
    final = read_runs(log_dir)
    jobs = [r[0] for r in rows]
    missing = [(j, s) for j in jobs for s in STEPS if final[(j, s)] == 0]
    assert missing == [], f"steps never ran (seed {seed})"
    for k, durable in enumerate(kills):
        redone = [key for key in durable.done if final[key] != durable.runs[key]]
        assert redone == [], f"kill {k}: checkpointed steps ran again (seed {seed})"
        unexplained = [
            key
            for key, count in durable.runs.items()
            if count and key not in durable.done and not downstream_of_in_flight(durable, *key)
        ]
        assert unexplained == [], f"kill {k}: step ran outside the re-run window ({seed})"
    reruns = sum(count - 1 for count in final.values())
    print(f"seed={seed} kills={len(kills)} step re-runs={reruns}")
