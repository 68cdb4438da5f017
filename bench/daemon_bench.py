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
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine_table, markdown_table, median  # noqa: E402

DRAMATIQ_VENV = HERE / ".venvs" / "dramatiq"
DEFAULT_URL = os.environ.get("ROUTILUX_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: Seconds any single phase may take before the round is reported as failed.
PHASE_TIMEOUT = 120.0
Timings = dict[str, float]  # message id -> unix time

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


# --------------------------------------------------------------------------- publishing


async def _publish(url: str, queue: str, count: int, rate: float | None) -> Timings:
    """Publish ``count`` messages ``{"n": i}``; paced at ``rate``/s if given.

    Returns message id -> publish time. Unpaced publishing waits for confirms in
    chunks so the pre-load is complete before the consumer starts.
    """
    sent: Timings = {}
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=rate is None)
        start = time.monotonic()
        pending = []
        for i in range(count):
            if rate is not None:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing, not waiting for a condition
            mid = f"m{i}-{uuid.uuid4().hex[:8]}"
            message = aio_pika.Message(
                json.dumps({"n": i}).encode(),
                message_id=mid,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            sent[mid] = time.time()
            pending.append(channel.default_exchange.publish(message, routing_key=queue))
            if rate is not None or len(pending) >= 500:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await connection.close()
    return sent


async def _declare(url: str, queue: str, arguments: dict[str, Any] | None = None) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=arguments)
    finally:
        await connection.close()


async def _delete(url: str, *queues: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
    finally:
        await connection.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll another process's progress (store, file) until ``predicate``; raise on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(0.05)


def latency_stats(sent: Timings, done: Timings) -> dict[str, float]:
    lat = sorted((done[m] - t) * 1000 for m, t in sent.items() if m in done)
    if not lat:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    return {"p50_ms": lat[len(lat) // 2], "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


# --------------------------------------------------------------------------- daemon


class DaemonImpl:
    """The routilux daemon as a subprocess, with its own store and port."""

    name = "routilux-daemon"

    def __init__(self, url: str, tmp: Path, queue: str) -> None:
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
prefetch = 200
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
        asyncio.run(_declare(self.url, self.queue, dlx))

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

    def wait_done(self, count: int) -> None:
        wait_until(lambda: len(self._rows()) >= count, PHASE_TIMEOUT, f"{count} completed jobs")

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
        asyncio.run(_delete(self.url, self.queue, f"{self.queue}.dlq"))


# --------------------------------------------------------------------------- raw loop


async def _raw_consume(url: str, queue: str, out: Path) -> None:
    """The raw consumer process: ack each message, log (id, received, acked) times."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)
    q = await channel.declare_queue(queue, durable=True)
    finished = asyncio.Event()
    with out.open("a", buffering=1) as fh:  # line-buffered: one write per message

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received = time.time()
            await message.ack()
            fh.write(f"{message.message_id} {received} {time.time()}\n")

        await q.consume(on_message)
        await finished.wait()  # runs until terminated


class RawImpl:
    """aio-pika consume + ack, prefetch 100, in its own process."""

    name = "raw aio-pika loop"

    def __init__(self, url: str, tmp: Path, queue: str) -> None:
        self.url, self.tmp, self.queue = url, tmp, queue
        self.out = tmp / "raw.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        asyncio.run(_declare(self.url, self.queue))

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--raw-consumer", self.queue, str(self.out)],
            cwd=REPO,
        )

    def _lines(self) -> list[list[str]]:
        if not self.out.exists():
            return []
        return [line.split() for line in self.out.read_text().splitlines() if line.strip()]

    def wait_done(self, count: int) -> None:
        wait_until(lambda: len(self._lines()) >= count, PHASE_TIMEOUT, f"{count} acks")

    def completions(self) -> tuple[Timings, Timings]:
        rows = self._lines()
        return {r[0]: float(r[1]) for r in rows}, {r[0]: float(r[2]) for r in rows}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        asyncio.run(_delete(self.url, self.queue))


# --------------------------------------------------------------------------- dramatiq

DRAMATIQ_ACTOR = """
import os, time, dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
dramatiq.set_broker(RabbitmqBroker(url=os.environ["BENCH_URL"]))
OUT = os.environ["BENCH_OUT"]

@dramatiq.actor(queue_name=os.environ["BENCH_QUEUE"], max_retries=0)
def step(mid, n):
    received = time.time()
    with open(OUT, "a") as fh:
        fh.write(f"{mid} {received} {time.time()}\\n")
"""

DRAMATIQ_PUBLISH = """
import json, sys, time
import bench_actor
count, rate = int(sys.argv[1]), float(sys.argv[2])
sent, start = {}, time.monotonic()
for i in range(count):
    if rate > 0:
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    mid = f"d{i}-{time.time_ns()}"
    sent[mid] = time.time()
    bench_actor.step.send(mid, i)
print(json.dumps(sent))
"""


class DramatiqImpl:
    """Dramatiq worker (1 process, 8 threads) from its own venv."""

    name = "dramatiq 1x8"

    def __init__(self, url: str, tmp: Path, queue: str) -> None:
        self.url, self.tmp, self.queue = url, tmp, queue
        self.out = tmp / "dramatiq.log"
        (tmp / "bench_actor.py").write_text(DRAMATIQ_ACTOR)
        (tmp / "bench_publish.py").write_text(DRAMATIQ_PUBLISH)
        self.env = dict(
            os.environ,
            BENCH_URL=url,
            BENCH_OUT=str(self.out),
            BENCH_QUEUE=queue,
            PYTHONPATH=str(tmp),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.py = DRAMATIQ_VENV / "bin" / "python"

    def prepare(self) -> None:
        pass  # dramatiq declares its own queues on first send

    def publish(self, count: int, rate: float | None) -> Timings:
        result = subprocess.run(
            [str(self.py), str(self.tmp / "bench_publish.py"), str(count), str(rate or 0)],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=PHASE_TIMEOUT,
        )
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(DRAMATIQ_VENV / "bin" / "dramatiq"),
                "bench_actor",
                "--processes",
                "1",
                "--threads",
                "8",
                "--path",
                str(self.tmp),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    wait_done = RawImpl.wait_done
    completions = RawImpl.completions
    _lines = RawImpl._lines

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        asyncio.run(_delete(self.url, self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"))


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
    return asyncio.run(_publish(url, queue, count, rate))


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
    parser.add_argument("--raw-consumer", nargs=2, metavar=("QUEUE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_consumer:
        asyncio.run(_raw_consume(args.url, args.raw_consumer[0], Path(args.raw_consumer[1])))
        return
    kinds = [k for k in args.impls.split(",") if k]
    if "dramatiq" in kinds and not (DRAMATIQ_VENV / "bin" / "dramatiq").exists():
        print(
            f"dramatiq skipped: create {DRAMATIQ_VENV} with "
            f"`python3 -m venv {DRAMATIQ_VENV} && {DRAMATIQ_VENV}/bin/pip install "
            f"'dramatiq[rabbitmq]'`",
            file=sys.stderr,
        )
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
