"""Checkpoint-store overhead: workload W1 with and without the SQLite store.

W1 is a 4-routine chain, 2,000 concurrent jobs, ``thread_pool_size=8``. Each round
runs the variants interleaved, so machine noise hits them alike: no checkpointer;
two checkpointers that drop everything (one takes every snapshot through ``save``,
the engine's cost of building them all; one only receives ``save_deferred``
notices, the engine's cost when the store builds what it writes);
SqliteCheckpointStore with ``synchronous=normal`` and with ``synchronous=full``. A
store variant's clock stops only when every job has completed *and* its terminal
snapshot is committed. Reported: median jobs/s over the rounds, ratio to the
store-less run of the same round, writer commits/s and snapshots per commit. Each round checks that
all jobs completed and (for the store) that the table holds all of them completed;
a failed check marks the variant FAIL.

A second table shows durable claim throughput: ``claim()`` from 8 threads, and
``claim_many`` batches of 30 from 2 threads as the daemon's intake makes them.

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

from daemon.checkpoints import ClaimRequest
from daemon.checkpoints.sqlite import SqliteCheckpointStore
from routilux import Flow, Routine, Runtime
from routilux.monitoring.flow_registry import FlowRegistry

#: Name of the benchmark flow in its private registry.
FLOW = "w1_chain"
#: Variants in run order: label -> synchronous mode (None: no store; "null"/"null-deferred":
#: checkpointers that drop everything, see the module docstring).
VARIANTS: dict[str, str | None] = {
    "no store": None,
    "null checkpointer (save)": "null",
    "null checkpointer (save_deferred)": "null-deferred",
    "sqlite normal": "normal",
    "sqlite full": "full",
}


class NullCheckpointer:
    """Accepts and drops snapshots: isolates the engine's snapshot cost from the store's."""

    def save(self, snapshot: dict[str, Any]) -> None:
        del snapshot


class NullDeferredCheckpointer(NullCheckpointer):
    """Also offers ``save_deferred`` and ignores it: no snapshot is ever built."""

    def save_deferred(self, job_state: Any, seq: int) -> None:
        del job_state, seq


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
    if mode not in (None, "null", "null-deferred"):
        path = workdir / f"w1-{mode}-{time.monotonic_ns()}.db"
        store = SqliteCheckpointStore(str(path), synchronous=mode)
    nulls = {"null": NullCheckpointer, "null-deferred": NullDeferredCheckpointer}
    checkpointer = nulls[mode]() if mode in nulls else store
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
        result["written"] = stats.snapshots_committed / jobs
        conn = sqlite3.connect(store.path)
        done = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'completed'").fetchone()[0]
        conn.close()
        if done != jobs:
            problems.append(f"{done} of {jobs} jobs stored as completed")
    return result


def run_claims(
    claims: int, threads: int, mode: str, workdir: Path, batch: int = 1
) -> dict[str, float]:
    """Durable claims from ``threads`` threads at once, ``batch`` per call (the daemon's
    per-message cost: it claims each loop iteration's deliveries with one claim_many)."""
    store = SqliteCheckpointStore(
        str(workdir / f"claims-{mode}-{time.monotonic_ns()}.db"), synchronous=mode
    )
    per_thread = claims // threads

    def claim_all(t: int) -> None:
        for first in range(0, per_thread, batch):
            requests = [
                ClaimRequest(f"{t}-{i}", FLOW, "bench", f"key-{t}-{i}", {"n": i})
                for i in range(first, min(first + batch, per_thread))
            ]
            if batch == 1:
                store.claim(*requests[0])
            else:
                store.claim_many(requests)

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


#: Claim patterns: label -> (threads, claims per call).
CLAIM_PATTERNS = {"claim(), 8 threads": (8, 1), "claim_many(30), 2 threads": (2, 30)}


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
            (mode, label): [
                run_claims(2000, threads, mode, Path(tmp), batch) for _ in range(args.rounds)
            ]
            for mode in ("normal", "full")
            for label, (threads, batch) in CLAIM_PATTERNS.items()
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
                f"{median(r['written'] for r in runs):.2f}" if store else "-",
            ]
        )
    headers = [
        "variant",
        "jobs/s (median)",
        "range",
        "vs no store (paired)",
        "commits/s",
        "snapshots/commit",
        "changes/job",
        "snapshots written/job",
    ]
    problems = sorted({p for runs in results.values() for r in runs for p in r["problems"]})
    return "\n\n".join(
        [
            f"## Checkpoint store (W1: 4-step chain, {jobs:,} jobs, thread_pool_size=8,"
            f" median of {rounds} rounds)",
            markdown_table(headers, rows),
            "vs no store is the median over rounds of the ratio to that round's store-less run."
            " Store variants stop the clock when every terminal snapshot is committed;"
            " changes/job counts the checkpoints the Runtime announced to the store;"
            " snapshots written/job the ones it built and wrote (the writer keeps only"
            " the newest per job in each group, and takes it only then).",
            ("Problems: " + "; ".join(problems)) if problems else "All correctness checks passed.",
        ]
    )


def claims_report(claims: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    rows = [
        [
            f"sqlite {mode}",
            label,
            f"{median(r['rate'] for r in runs):,.0f}",
            f"{median(r['per_commit'] for r in runs):.1f}",
        ]
        for (mode, label), runs in claims.items()
    ]
    return "\n\n".join(
        [
            "### Durable claims (2,000 claims, each call waits for its commit)",
            markdown_table(["store", "calls", "claims/s (median)", "claims/commit"], rows),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
