"""Daemon benchmark: RabbitMQ message -> 3-step job -> durable completion.

Three consumers of the same workload, each in its own process, run round-robin:

* ``daemon``: ``python -m daemon run`` (8 threads, SQLite store, synchronous=normal,
  ack on_checkpoint) running a 3-routine chain per message;
* ``raw``: a bare aio-pika consume-and-ack loop (prefetch 100), our ceiling;
* ``dramatiq``: Dramatiq on its RabbitMQ broker, 1 process x 8 threads, a trivial
  actor (from a throwaway venv under ``bench/.venvs/dramatiq``).

Two workloads per round:

* ``batch``: pre-load N messages, start the consumer, measure first receive ->
  last completion (msgs/s);
* ``steady``: publish at a fixed rate for a few seconds to the running consumer;
  publish -> completion latency p50/p99 (the daemon's completion time is the
  ``jobs.completed_at`` column; the others record when their handler finished).

Every message must complete exactly once (checked); a round that fails says so.
Prints a markdown table. ``python bench/daemon_bench.py --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from amqp_load import (  # noqa: E402
    DEFAULT_URL,
    PHASE_TIMEOUT,
    Timings,
    declare_queue,
    delete_queues,
    latency_stats,
    publish_messages,
    wait_until,
)
from baseline_consumers import DramatiqImpl, RawImpl, ensure_dramatiq_venv  # noqa: E402
from common import BenchError, machine_table, markdown_table, median  # noqa: E402

# --------------------------------------------------------------------------- flow
# The daemon imports this module (flows.modules = ["daemon_bench"]) and calls
# register_flows; the routilux imports stay inside it so the raw consumer mode
# does not pay for them.


def register_flows(registry: Any) -> None:
    """Register the 3-step ``bench_chain`` flow (called by the daemon)."""
    from routilux import Flow, Routine

    class Step(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger")
            self.define_event("out", ["n"])
            self.set_logic(self.run)

        def run(self, trigger: list[dict[str, Any]], policy_message: Any, js: Any) -> None:
            for point in trigger:
                self.emit("out", n=point.get("n", 0))

    class Last(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input")
            self.set_logic(self.run)

        def run(self, input: list[dict[str, Any]], policy_message: Any, js: Any) -> None:
            for point in input:
                js.shared_data["n"] = point["n"]

    flow = Flow("bench_chain")
    flow.add_routine(Step(), "a")
    mid = Step()
    flow.add_routine(mid, "b")
    flow.add_routine(Last(), "c")
    flow.connect("a", "out", "b", "trigger")
    flow.connect("b", "out", "c", "input")
    flow.entry_routine_id = "a"
    registry.register_by_name("bench_chain", flow)


# --------------------------------------------------------------------------- daemon


class DaemonImpl:
    """The routilux daemon as a subprocess, with its own store and port."""

    name = "routilux-daemon"

    def __init__(self, url: str, tmp: Path, queue: str, prefetch: int = 200) -> None:
        self.url, self.tmp, self.queue = url, tmp, queue
        self.store = tmp / "store.db"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = tmp / "daemon.toml"
        config.write_text(
            f"""
[runtime]
threads = 8
[store]
path = "{self.store}"
synchronous = "normal"
[amqp]
url = "{url}"
prefetch = {prefetch}
dead_letter_exchange = "{queue}.dlx"
[metrics]
port = {self.port}
[flows]
modules = ["daemon_bench"]
[[triggers]]
type = "amqp"
flow = "bench_chain"
queue = "{queue}"
"""
        )
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        dlx = {
            "x-dead-letter-exchange": f"{self.queue}.dlx",
            "x-dead-letter-routing-key": f"{self.queue}.dlq",
        }
        asyncio.run(declare_queue(self.url, self.queue, dlx))

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{REPO}")
        log = (self.tmp / "daemon.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(self.config)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def _rows(self) -> list[tuple[str, str, str]]:
        if not self.store.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5)
            try:
                return list(
                    conn.execute(
                        "SELECT dedupe_key, created_at, completed_at FROM jobs"
                        " WHERE status = 'completed'"
                    )
                )
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return []

    def _completed(self) -> int:
        # A COUNT over the status index: polling must not steal the daemon's CPU.
        if not self.store.exists():
            return 0
        try:
            conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5)
            try:
                query = "SELECT COUNT(*) FROM jobs WHERE status = 'completed'"
                return int(conn.execute(query).fetchone()[0])
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return 0

    def wait_done(self, count: int) -> None:
        wait_until(lambda: self._completed() >= count, PHASE_TIMEOUT, f"{count} completed jobs")

    def completions(self) -> tuple[Timings, Timings]:
        """(first seen, completed) unix times per message id."""
        seen: Timings = {}
        done: Timings = {}
        for key, created, completed in self._rows():
            seen[key] = datetime.fromisoformat(created).timestamp()
            done[key] = datetime.fromisoformat(completed).timestamp()
        return seen, done

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)
        asyncio.run(delete_queues(self.url, self.queue, f"{self.queue}.dlq"))


# --------------------------------------------------------------------------- rounds

IMPLS: dict[str, type[Any]] = {"daemon": DaemonImpl, "raw": RawImpl, "dramatiq": DramatiqImpl}


def run_round(
    kind: str, url: str, messages: int, rates: list[float], seconds: float
) -> dict[str, Any]:
    """One batch + steady measurements of one implementation; never raises."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        queue = f"bench.{kind}.{uuid.uuid4().hex[:8]}"
        impl = IMPLS[kind](url, Path(tmp), queue)
        try:
            return _measure(impl, url, queue, messages, rates, seconds)
        except Exception as exc:
            return {"ok": False, "problems": [f"{type(exc).__name__}: {exc}"]}
        finally:
            try:
                impl.stop()
            except Exception as exc:  # cleanup must not hide the figures
                print(f"cleanup of {kind} failed: {exc}", file=sys.stderr)


def _send(impl: Any, url: str, queue: str, count: int, rate: float | None) -> Timings:
    if isinstance(impl, DramatiqImpl):
        return impl.publish(count, rate)
    return asyncio.run(publish_messages(url, queue, count, rate))


def _measure(
    impl: Any, url: str, queue: str, n: int, rates: list[float], secs: float
) -> dict[str, Any]:
    impl.prepare()
    expected = _send(impl, url, queue, n, None)
    impl.start()
    impl.wait_done(n)
    seen, done = impl.completions()
    result: dict[str, Any] = {
        "batch_rate": n / (max(done[m] for m in expected) - min(seen[m] for m in expected))
    }
    for rate in rates:
        steady = _send(impl, url, queue, int(rate * secs), rate)
        expected = {**expected, **steady}
        impl.wait_done(len(expected))
        _, done = impl.completions()
        stats = latency_stats(steady, done)
        result[f"p50_ms@{rate:g}"], result[f"p99_ms@{rate:g}"] = stats["p50_ms"], stats["p99_ms"]
    missing, unexpected = set(expected) - set(done), set(done) - set(expected)
    problems = (
        [f"{len(missing)} missing, {len(unexpected)} unexpected"] if missing or unexpected else []
    )
    return {"ok": not problems, "problems": problems, **result}


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    """The markdown table, target ratios and machine facts."""

    def med(kind: str, key: str) -> float:
        return median(r[key] for r in results.get(kind, []) if r.get("ok") and key in r)

    rates = _rates(args)
    rows = []
    for kind, rounds in results.items():
        problems = sorted({p for r in rounds for p in r.get("problems", [])})
        cells = [IMPLS[kind].name, f"{med(kind, 'batch_rate'):,.0f}"]
        for rate in rates:
            cells += [
                f"{med(kind, f'p50_ms@{rate:g}'):.1f}",
                f"{med(kind, f'p99_ms@{rate:g}'):.1f}",
            ]
        rows.append([*cells, "FAIL: " + "; ".join(problems) if problems else "ok"])
    headers = ["consumer", f"batch msgs/s ({args.messages} pre-loaded)"]
    for rate in rates:
        headers += [f"p50 ms @ {rate:g}/s", f"p99 ms @ {rate:g}/s"]
    daemon_rate = med("daemon", "batch_rate")
    targets = {"raw": 0.5, "dramatiq": 1.0}
    ratios = [
        f"- daemon / {IMPLS[k].name}: {daemon_rate / med(k, 'batch_rate'):.2f}x (target >= {t}x)"
        for k, t in targets.items()
        if k in results
    ]
    header = (
        "## Daemon: RabbitMQ -> 3-step job -> durable completion\n\n"
        f"Medians of {args.runs} rounds (round-robin). Daemon: 8 threads, prefetch 200, "
        "SQLite synchronous=normal, ack on_checkpoint; latency is publish -> jobs.completed_at.\n"
    )
    table = markdown_table([*headers, "check"], rows)
    return "\n".join([header, table, "", *ratios, "", machine_table()])


def _rates(args: argparse.Namespace) -> list[float]:
    return [float(r) for r in str(args.rates).split(",") if r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rates", default="1000,500", help="steady msgs/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="steady duration")
    parser.add_argument("--impls", default="daemon,raw,dramatiq")
    args = parser.parse_args()
    kinds = [k for k in args.impls.split(",") if k]
    if "dramatiq" in kinds:
        try:
            ensure_dramatiq_venv()
        except BenchError as exc:  # e.g. no package index: the other columns still count
            print(f"dramatiq skipped: {exc}", file=sys.stderr)
            kinds.remove("dramatiq")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for round_no in range(args.runs):
        for kind in kinds:
            result = run_round(kind, args.url, args.messages, _rates(args), args.seconds)
            print(f"round {round_no + 1} {kind}: {result}", file=sys.stderr)
            results[kind].append(result)
    print(report(results, args))


if __name__ == "__main__":
    main()
