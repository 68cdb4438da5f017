"""Checkpoint-store overhead: workload W1 with and without the SQLite store.

W1 is a 4-routine chain, 2,000 concurrent jobs, ``thread_pool_size=8``. Each round
runs three variants, interleaved so machine noise hits them alike: no checkpointer,
SqliteCheckpointStore with ``synchronous=normal`` and with ``synchronous=full``. A
store variant's clock stops only when every job has completed *and* its terminal
snapshot is committed. Reported: median jobs/s over the rounds, ratio to the
store-less run of the same round, writer commits/s and snapshots per commit. Each round checks that
all jobs completed and (for the store) that the table holds all of them completed;
a failed check marks the variant FAIL.

A second table shows durable ``claim()`` throughput (8 threads, the daemon's
per-message cost; concurrent claims share commits).

Usage: ``python bench/store_bench.py [--jobs 2000] [--rounds 5]``; prints markdown.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_table, markdown_table, median, paired_ratio

from daemon.checkpoints.sqlite import SqliteCheckpointStore
from routilux import Flow, Routine, Runtime
from routilux.monitoring.flow_registry import FlowRegistry

#: Name of the benchmark flow in its private registry.
FLOW = "w1_chain"
#: Variants in run order: label -> synchronous mode (None: no store; "null": a checkpointer
#: that drops every snapshot, i.e. the engine's own cost of taking snapshots).
VARIANTS: dict[str, str | None] = {
    "no store": None,
    "null checkpointer": "null",
    "sqlite normal": "normal",
    "sqlite full": "full",
}


class NullCheckpointer:
    """Accepts and drops snapshots: isolates the engine's snapshot cost from the store's."""

    def save(self, snapshot: dict[str, Any]) -> None:
        del snapshot


class Pass(Routine):
    """Forwards every data point it receives."""

    slot_name = "input"

    def __init__(self) -> None:
        super().__init__()
        self.define_slot(self.slot_name)
        self.define_event("output")
        self.set_logic(self.run)

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        for item in items:
            self.emit("output", **item)


class Entry(Pass):
    slot_name = "trigger"


def build_registry() -> FlowRegistry:
    flow = Flow(FLOW)
    ids = ["r1", "r2", "r3", "r4"]
    for i, rid in enumerate(ids):
        flow.add_routine(Entry() if i == 0 else Pass(), rid)
    for src, dst in itertools.pairwise(ids):
        flow.connect(src, "output", dst, "input")
    registry = FlowRegistry()
    registry.register_by_name(FLOW, flow)
    return registry


def run_variant(
    registry: FlowRegistry, jobs: int, mode: str | None, workdir: Path
) -> dict[str, Any]:
    """One W1 run; returns jobs/s, writer figures and any correctness problems."""
    store = None
    if mode not in (None, "null"):
        path = workdir / f"w1-{mode}-{time.monotonic_ns()}.db"
        store = SqliteCheckpointStore(str(path), synchronous=mode)
    checkpointer = NullCheckpointer() if mode == "null" else store
    problems: list[str] = []
    with Runtime(thread_pool_size=8, checkpointer=checkpointer, registry=registry) as runtime:
        start = time.perf_counter()
        states = [runtime.exec(FLOW, {"n": i}) for i in range(jobs)]
        if not runtime.wait_until_all_jobs_finished(300):
            problems.append("jobs did not finish")
        if store is not None and not all(store.wait_durable(s.job_id, timeout=60) for s in states):
            problems.append("terminal snapshots not durable")
        elapsed = time.perf_counter() - start
    if any(str(s.status) != "completed" for s in states):
        problems.append("a job did not complete")
    result: dict[str, Any] = {"rate": jobs / elapsed, "problems": problems}
    if store is not None:
        stats = store.stats()
        store.close()
        result["commits_per_s"] = stats.commits / elapsed
        result["per_commit"] = stats.snapshots_per_commit
        result["received"] = stats.snapshots_received / jobs
        conn = sqlite3.connect(store.path)
        done = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'completed'").fetchone()[0]
        conn.close()
        if done != jobs:
            problems.append(f"{done} of {jobs} jobs stored as completed")
    return result


def run_claims(claims: int, threads: int, mode: str, workdir: Path) -> dict[str, float]:
    """Durable claims from ``threads`` threads at once (the daemon's per-message cost)."""
    store = SqliteCheckpointStore(
        str(workdir / f"claims-{mode}-{time.monotonic_ns()}.db"), synchronous=mode
    )
    per_thread = claims // threads

    def claim_all(t: int) -> None:
        for i in range(per_thread):
            store.claim(f"{t}-{i}", FLOW, "bench", f"key-{t}-{i}", {"n": i})

    pool = [threading.Thread(target=claim_all, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    commits = store.stats().commits
    store.close()
    return {
        "rate": per_thread * threads / elapsed,
        "per_commit": per_thread * threads / max(commits, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    registry = build_registry()
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="store_bench_") as tmp:
        run_variant(registry, 200, "normal", Path(tmp))  # warm-up: imports, page cache
        for _ in range(args.rounds):
            for label, mode in VARIANTS.items():
                results[label].append(run_variant(registry, args.jobs, mode, Path(tmp)))
        claims = {
            mode: [run_claims(2000, 8, mode, Path(tmp)) for _ in range(args.rounds)]
            for mode in ("normal", "full")
        }
    print(report(results, args.jobs, args.rounds))
    print()
    print(claims_report(claims))
    print()
    print(machine_table())
    return 0 if all(not r["problems"] for runs in results.values() for r in runs) else 1


def report(results: dict[str, list[dict[str, Any]]], jobs: int, rounds: int) -> str:
    base = [r["rate"] for r in results["no store"]]
    rows = []
    for label, runs in results.items():
        rate = median(r["rate"] for r in runs)
        store = label.startswith("sqlite")
        failed = any(r["problems"] for r in runs)
        rows.append(
            [
                label + (" FAIL" if failed else ""),
                f"{rate:,.0f}",
                f"{min(r['rate'] for r in runs):,.0f}-{max(r['rate'] for r in runs):,.0f}",
                f"{paired_ratio([r['rate'] for r in runs], base):.2f}x",
                f"{median(r['commits_per_s'] for r in runs):,.0f}" if store else "-",
                f"{median(r['per_commit'] for r in runs):.1f}" if store else "-",
                f"{median(r['received'] for r in runs):.1f}" if store else "-",
            ]
        )
    headers = [
        "variant",
        "jobs/s (median)",
        "range",
        "vs no store (paired)",
        "commits/s",
        "snapshots/commit",
        "snapshots/job",
    ]
    problems = sorted({p for runs in results.values() for r in runs for p in r["problems"]})
    return "\n\n".join(
        [
            f"## Checkpoint store (W1: 4-step chain, {jobs:,} jobs, thread_pool_size=8,"
            f" median of {rounds} rounds)",
            markdown_table(headers, rows),
            "vs no store is the median over rounds of the ratio to that round's store-less run."
            " Store variants stop the clock when every terminal snapshot is committed;"
            " snapshots/job counts what the Runtime handed to the store (the writer keeps"
            " only the newest per job in each group).",
            ("Problems: " + "; ".join(problems)) if problems else "All correctness checks passed.",
        ]
    )


def claims_report(claims: dict[str, list[dict[str, float]]]) -> str:
    rows = [
        [
            f"sqlite {mode}",
            f"{median(r['rate'] for r in runs):,.0f}",
            f"{median(r['per_commit'] for r in runs):.1f}",
        ]
        for mode, runs in claims.items()
    ]
    return "\n\n".join(
        [
            "### Durable claims (2,000 claims from 8 threads, each waits for its commit)",
            markdown_table(["store", "claims/s (median)", "claims/commit"], rows),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
