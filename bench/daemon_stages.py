"""Where a message's latency goes inside the daemon, stage by stage.

Runs the daemon bench's daemon (same flow and config) with a few of its methods
wrapped to note, per message id, when the delivery reached the loop, when its batch
started, when its job was about to start and when ``Runtime.exec`` returned. Then
it publishes at a steady rate and prints p50/p90/p99 of each stage, the last one
ending at ``jobs.completed_at``. A profiling aid, not a benchmark: ``make bench``
does not run it.

    .venv/bin/python bench/daemon_stages.py --rate 1000 --seconds 5

It also shows where the slowest 1% of messages spent their time (the mean of each
stage over them), and reports, for the whole run, the launch batches (size, and
time from their start until their claims commit), the writer's transactions (time
and rows) and the cyclic GC's pauses.

The wrapping reaches into private methods (``Intake.on_message``,
``Launcher._start``, ``Launcher._try_start``, ``SnapshotWriter._commit``) and will
need updating when those move.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from amqp_load import DEFAULT_URL, delete_queues, publish_messages  # noqa: E402
from daemon_bench import REPO, DaemonImpl  # noqa: E402

STAGES = (
    ("publish -> delivery on the loop", "published", "delivered"),
    ("delivery -> its batch starts", "delivered", "batch"),
    ("batch start -> job about to start", "batch", "starting"),
    ("Runtime.exec", "starting", "started"),
    ("exec returned -> completed_at", "started", "completed"),
    ("total", "published", "completed"),
)


def run_daemon_with_marks(out: str, argv: list[str]) -> int:
    """The child: the daemon CLI, with per-message marks written to ``out`` at exit."""
    from daemon import launcher
    from daemon.amqp import intake
    from daemon.cli import main

    marks: dict[str, dict[str, float]] = {}

    def mark(key: str | None, name: str) -> None:
        marks.setdefault(str(key), {})[name] = time.time()

    on_message = intake.Intake.on_message
    start = launcher.Launcher._start
    try_start = launcher.Launcher._try_start

    samples: dict[str, list[float]] = {name: [] for name, _ in INSIDE}
    _probe_writer(samples)
    _probe_gc(samples)

    def marked_on_message(self: Any, queue: str, message: Any) -> None:
        mark(message.message_id, "delivered")
        on_message(self, queue, message)

    async def marked_start(self: Any, proposed: Any, requests: Any, *args: Any) -> Any:
        for request in requests:
            mark(request.dedupe_key, "batch")
        began = time.perf_counter()
        try:
            return await start(self, proposed, requests, *args)
        finally:
            samples["batch"].append(len(requests))
            samples["batch_ms"].append((time.perf_counter() - began) * 1000)

    def marked_try_start(self: Any, job_id: str, request: Any) -> Any:
        mark(request.dedupe_key, "starting")
        outcome = try_start(self, job_id, request)
        mark(request.dedupe_key, "started")
        return outcome

    intake.Intake.on_message = marked_on_message  # type: ignore[method-assign]
    launcher.Launcher._start = marked_start  # type: ignore[method-assign]
    launcher.Launcher._try_start = marked_try_start  # type: ignore[method-assign]
    atexit.register(lambda: Path(out).write_text(json.dumps({"marks": marks, **samples})))
    return main(argv)


def _probe_writer(samples: dict[str, list[float]]) -> None:
    """Time each writer transaction and count its rows (snapshots and claims)."""
    from daemon.checkpoints import writer

    commit = writer.SnapshotWriter._commit

    def timed_commit(self: Any, batch: Any, ahead: Any, calls: Any, maintenance: bool) -> Any:
        began = time.perf_counter()
        try:
            return commit(self, batch, ahead, calls, maintenance)
        finally:
            samples["txn_ms"].append((time.perf_counter() - began) * 1000)
            samples["txn_rows"].append(len(batch) + sum(len(a.items) for a in ahead))

    writer.SnapshotWriter._commit = timed_commit  # type: ignore[method-assign]


def _probe_gc(samples: dict[str, list[float]]) -> None:
    """Record every cyclic-GC pause."""
    began = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            samples["gc_ms"].append((time.perf_counter() - began[0]) * 1000)

    gc.callbacks.append(on_gc)


#: What the child measures inside the daemon, besides the per-message marks.
INSIDE = (
    ("batch", "launch batch size (messages)"),
    ("batch_ms", "launch batch: start -> claims committed, ms"),
    ("txn_ms", "writer transaction, ms"),
    ("txn_rows", "writer transaction rows (snapshots + claims)"),
    ("gc_ms", "cyclic GC pause, ms"),
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def measure(rate: float, seconds: float, warmup: int) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        queue = f"bench.stages.{uuid.uuid4().hex[:8]}"
        daemon = DaemonImpl(DEFAULT_URL, Path(tmp), queue)
        daemon.prepare()
        out = Path(tmp) / "marks.json"
        env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{REPO}")
        command = [sys.executable, __file__, "--child", str(out), "run", "--config"]
        with (Path(tmp) / "daemon.log").open("wb") as log:
            daemon.proc = subprocess.Popen(
                [*command, str(daemon.config)], cwd=REPO, env=env, stdout=log, stderr=log
            )
        try:
            asyncio.run(publish_messages(DEFAULT_URL, queue, warmup, None))
            daemon.wait_done(warmup)
            sent = asyncio.run(publish_messages(DEFAULT_URL, queue, int(rate * seconds), rate))
            daemon.wait_done(warmup + len(sent))
            _, completed = daemon.completions()
        finally:
            daemon.proc.terminate()
            daemon.proc.wait(60)
            asyncio.run(delete_queues(DEFAULT_URL, queue, f"{queue}.dlq"))
        recorded = json.loads(out.read_text())
        marks = recorded["marks"]
    timelines = []
    for message_id, published in sent.items():
        times = {**marks.get(message_id, {}), "published": published}
        if message_id in completed:
            times["completed"] = completed[message_id]
        timelines.append(times)
    rows = []
    for title, begin, end in STAGES:
        spans = [(t[end] - t[begin]) * 1000 for t in timelines if begin in t and end in t]
        figures = " | ".join(f"{percentile(spans, q):.2f}" for q in (0.5, 0.9, 0.99))
        rows.append(f"| {title} | {figures} | {len(spans)} |")
    header = "| stage, ms | p50 | p90 | p99 | messages |\n|---|---|---|---|---|"
    inside = "| inside the daemon | p50 | p90 | p99 | max | count |\n|---|---|---|---|---|---|"
    for key, title in INSIDE:
        values = recorded[key]
        figures = " | ".join(f"{percentile(values, q):.2f}" for q in (0.5, 0.9, 0.99))
        top = max(values, default=float("nan"))
        inside += f"\n| {title} | {figures} | {top:.2f} | {len(values)} |"
    return (
        f"At {rate:g} msgs/s for {seconds:g} s:\n\n{header}\n"
        + "\n".join(rows)
        + f"\n\n{slowest_breakdown(timelines)}"
        + f"\n\nWhole run, warm-up included:\n\n{inside}"
    )


def slowest_breakdown(timelines: list[dict[str, float]], share: float = 0.01) -> str:
    """Where the slowest ``share`` of messages (by total) spent their time: the mean
    of each stage over them, so the stages add up to their mean total."""
    whole = [t for t in timelines if all(k in t for _, b, e in STAGES for k in (b, e))]
    whole.sort(key=lambda t: t["completed"] - t["published"])
    tail = whole[min(len(whole) - 1, int(len(whole) * (1 - share))) :] if whole else []
    cells = [
        f"{sum(t[end] - t[begin] for t in tail) / len(tail) * 1000:.2f}" if tail else "nan"
        for _, begin, end in STAGES
    ]
    titles = " | ".join(title for title, _, _ in STAGES)
    return (
        f"Slowest {share:.0%} of messages ({len(tail)}), mean ms per stage:\n\n"
        f"| {titles} |\n|{'---|' * len(STAGES)}\n| {' | '.join(cells)} |"
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(run_daemon_with_marks(sys.argv[2], sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="steady msgs/s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=500, help="messages before measuring")
    args = parser.parse_args()
    print(measure(args.rate, args.seconds, args.warmup))


if __name__ == "__main__":
    main()
