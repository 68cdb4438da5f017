"""CPU time the daemon spends per message, optionally paired against another checkout.

Wall-clock throughput on a shared 2-core machine swings by 10-20% between runs;
the daemon process's own CPU time per message is far steadier, so it is the
figure to compare two versions by. Each run pre-loads N messages for the daemon
bench's 3-step flow, starts ``python -m daemon run`` from a checkout, and reads
``/proc/<pid>/stat`` once 200 jobs are complete (startup excluded) and again when
all are; the per-message figure includes the daemon's AMQP receiver process, and
the main thread's share (the event loop) and the receiver's are reported too, and
so are the cores the daemon, its receiver and a local RabbitMQ (``beam.smp``) kept
busy meanwhile: each process has one GIL, so it cannot use much more than one core. With
``--against`` the two checkouts alternate, run after run.

    .venv/bin/python bench/daemon_cpu.py --messages 15000 --runs 3
    .venv/bin/python bench/daemon_cpu.py --against /tmp/base --runs 3   # paired

A profiling aid (Linux only), not a benchmark: ``make bench`` does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from amqp_load import DEFAULT_URL, publish_messages, wait_until  # noqa: E402
from daemon_bench import PHASE_TIMEOUT, REPO, DaemonImpl  # noqa: E402

#: Completed jobs after which the CPU clock starts (startup and imports excluded).
WARM = 200


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux ``/proc``)."""
    return _cpu_seconds(Path(f"/proc/{pid}/stat"))


def loop_cpu_seconds(pid: int) -> float:
    """CPU time of the process's main thread: the daemon's event loop."""
    return _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def _processes() -> list[tuple[int, str, int]]:
    """(pid, command name, parent pid) of every process now running (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
            found.append((int(stat.parent.name), head.split(" (", 1)[1], int(tail.split()[1])))
        except (OSError, IndexError, ValueError):
            continue
    return found


def children_of(pid: int) -> list[int]:
    """Pids of the running children of ``pid`` (the daemon's AMQP receiver)."""
    return [child for child, _, parent in _processes() if parent == pid]


def broker_pid() -> int | None:
    """The pid of a RabbitMQ server on this machine (its ``beam.smp``), if any."""
    return next((pid for pid, name, _ in _processes() if name == "beam.smp"), None)


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    root: Path, messages: int, url: str = DEFAULT_URL, prefetch: int = 200
) -> dict[str, float]:
    """One run of the daemon from checkout ``root``: CPU us per message and msgs/s."""
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        queue = f"bench.cpu.{uuid.uuid4().hex[:8]}"
        daemon = DaemonImpl(url, Path(tmp), queue, prefetch)
        daemon.prepare()
        asyncio.run(publish_messages(url, queue, messages, None))
        env = dict(os.environ, PYTHONPATH=f"{root / 'bench'}{os.pathsep}{root}")
        command = [sys.executable, "-m", "daemon", "run", "--config", str(daemon.config)]
        with (Path(tmp) / "daemon.log").open("wb") as log:
            daemon.proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=log)
        try:
            wait_until(lambda: daemon._completed() >= WARM, PHASE_TIMEOUT, f"{WARM} jobs")
            pid, broker = daemon.proc.pid, broker_pid()
            children = children_of(pid)
            warm_cpu, warm_loop = process_cpu_seconds(pid), loop_cpu_seconds(pid)
            warm_children = sum(process_cpu_seconds(child) for child in children)
            warm_broker = process_cpu_seconds(broker) if broker is not None else 0.0
            warm_at = time.monotonic()
            warm_done = daemon._completed()
            if warm_done >= messages:
                raise RuntimeError(
                    f"all {messages} messages were done before the clock started;"
                    " use more (--messages)"
                )
            daemon.wait_done(messages)
            cpu = process_cpu_seconds(pid) - warm_cpu
            loop = loop_cpu_seconds(pid) - warm_loop
            child_cpu = sum(process_cpu_seconds(child) for child in children) - warm_children
            broker_cpu = process_cpu_seconds(broker) - warm_broker if broker is not None else None
            wall = time.monotonic() - warm_at
            seen, done = daemon.completions()
        finally:
            daemon.stop()
    counted = messages - warm_done
    return {
        "cpu_us_per_msg": (cpu + child_cpu) / counted * 1e6,
        "loop_us_per_msg": loop / counted * 1e6,
        "receiver_us_per_msg": child_cpu / counted * 1e6,
        "msgs_per_s": messages / (max(done.values()) - min(seen.values())),
        "daemon_cores": cpu / wall,
        "receiver_cores": child_cpu / wall,
        "broker_cores": broker_cpu / wall if broker_cpu is not None else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=15_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout to pair with")
    parser.add_argument("--prefetch", type=int, default=200, help="[amqp] prefetch")
    args = parser.parse_args()
    roots = [REPO] if args.against is None else [args.against.resolve(), REPO]
    results: dict[Path, list[dict[str, float]]] = {root: [] for root in roots}
    for run in range(1, args.runs + 1):
        for root in roots:
            figures = measure(root, args.messages, prefetch=args.prefetch)
            results[root].append(figures)
            print(
                f"run {run} {root}: {figures['cpu_us_per_msg']:.0f} us/msg"
                f" (loop {figures['loop_us_per_msg']:.0f},"
                f" receiver {figures['receiver_us_per_msg']:.0f}),"
                f" {figures['msgs_per_s']:,.0f} msgs/s;"
                f" cores busy: daemon {figures['daemon_cores']:.2f},"
                f" receiver {figures['receiver_cores']:.2f},"
                f" broker {figures['broker_cores']:.2f}",
                flush=True,
            )
    for root, runs in results.items():
        cpu = statistics.median(r["cpu_us_per_msg"] for r in runs)
        loop = statistics.median(r["loop_us_per_msg"] for r in runs)
        receiver = statistics.median(r["receiver_us_per_msg"] for r in runs)
        receiver_cores = statistics.median(r["receiver_cores"] for r in runs)
        rate = statistics.median(r["msgs_per_s"] for r in runs)
        cores = statistics.median(r["daemon_cores"] for r in runs)
        broker = statistics.median(r["broker_cores"] for r in runs)
        print(
            f"median {root}: {cpu:.0f} us/msg (loop {loop:.0f}, receiver {receiver:.0f}),"
            f" {rate:,.0f} msgs/s; cores busy: daemon {cores:.2f},"
            f" receiver {receiver_cores:.2f}, broker {broker:.2f}"
        )
    if args.against is not None:
        for key, what in (("cpu_us_per_msg", "CPU"), ("loop_us_per_msg", "loop CPU")):
            ratios = [
                new[key] / old[key]
                for old, new in zip(results[roots[0]], results[roots[1]], strict=True)
            ]
            median = statistics.median(ratios)
            print(f"{what} per message, this checkout / --against: {median:.2f}x")


if __name__ == "__main__":
    main()
