"""Helpers of the fault suite: a daemon subprocess, bulk publishing, counting.

The ``Broker`` helper, ``wait_for`` and the ``Daemon`` subprocess wrapper come from
``tests/integration/daemon_harness.py`` (loaded by path under its own module name,
so this suite does not depend on how pytest names the integration package). Everything is
counted from the outside: the daemon's SQLite store (read-only connections), the
marker file the ``fault_flows`` steps append to, broker queue depths, and
``/proc/<pid>`` of the daemon.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aio_pika

from daemon.amqp.consumer import queue_arguments

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _load_integration_harness() -> Any:
    name = "routilux_integration_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, REPO / "tests/integration/daemon_harness.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


integration = _load_integration_harness()
Broker = integration.Broker
wait_for = integration.wait_for
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

#: Flow module the daemon imports (cwd is the repo root, ``tests`` a namespace package).
FLOWS_MODULE = "tests.fault.fault_flows"

CONFIG = """
[runtime]
threads = {threads}
shutdown_timeout = {shutdown_timeout}
[store]
path = "{store}"
synchronous = "normal"
retention_days = {retention_days}
max_resumes = {max_resumes}
[amqp]
url = "{url}"
prefetch = {prefetch}
ack = "{ack}"
dead_letter_exchange = "{dlx}"
[metrics]
host = "127.0.0.1"
port = @PORT@
[flows]
modules = ["{flows}"]

[[triggers]]
type = "amqp"
flow = "steps4"
queue = "{queue}"
"""

INTERVAL = """
[[triggers]]
type = "interval"
flow = "tick"
id = "{trigger_id}"
seconds = {seconds}
catch_up = "skip"
params = {{ source = "interval" }}
"""


def render_config(
    *,
    url: str,
    queue: str,
    dlx: str,
    store: str = "@STORE@",
    threads: int = 4,
    prefetch: int = 8,
    ack: str = "on_checkpoint",
    shutdown_timeout: float = 10,
    max_resumes: int = 5,
    retention_days: int = 7,
    interval: float | None = None,
) -> str:
    """A daemon TOML consuming ``queue`` into ``steps4`` (plus a ``tick`` timer if asked)."""
    text = CONFIG.format(
        threads=threads,
        shutdown_timeout=shutdown_timeout,
        store=store,
        retention_days=retention_days,
        max_resumes=max_resumes,
        url=url,
        prefetch=prefetch,
        ack=ack,
        dlx=dlx,
        flows=FLOWS_MODULE,
        queue=queue,
    )
    if interval is not None:
        text += INTERVAL.format(trigger_id=f"{queue}.tick", seconds=interval)
    return text


class FaultDaemon(integration.Daemon):  # type: ignore[misc,name-defined]
    """The integration ``Daemon`` plus the markers file and /proc readings."""

    def __init__(self, tmp: Path, config: str, store: Path | None = None) -> None:
        super().__init__(tmp, config)
        if store is not None:
            self.store = store
        self.markers = tmp / "markers.log"
        self.extra_env["FAULT_MARKERS"] = str(self.markers)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return int(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def proc_status(self) -> dict[str, int]:
        """VmRSS/VmHWM (kB) and Threads from /proc/<pid>/status, plus open fds."""
        wanted = {"VmRSS", "VmHWM", "Threads"}
        values: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in wanted:
                values[key] = int(rest.split()[0])
        values["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
        return values

    def ready(self) -> bool:
        return self.http("/readyz")[0] == 200

    def marker_counts(self) -> Counter[tuple[str, str]]:
        return read_markers(self.markers)

    def job_rows(self, columns: str = "job_id, status, dedupe_key, trigger") -> list[tuple]:
        return query(self.store, f"SELECT {columns} FROM jobs")

    def status_counts(self) -> Counter[str]:
        return Counter(row[0] for row in query(self.store, "SELECT status FROM jobs"))


def read_markers(path: Path) -> Counter[tuple[str, str]]:
    """How often each ``(job_id, step)`` ran so far."""
    if not path.exists():
        return Counter()
    return Counter(tuple(line.split(" ", 1)) for line in path.read_text().splitlines() if line)


def query(db: Path, sql: str, *args: Any) -> list[tuple]:
    """Rows of ``sql`` on a read-only connection; ``[]`` before the schema exists."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, args))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def durable_steps(db: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """``(done, maybe_rerun)`` from the store's snapshots after a kill.

    ``done``: steps a checkpoint shows finished (they must never run again).
    ``maybe_rerun``: steps resuming may run again: in flight or queued in the
    snapshot, downstream of such a step, or every step of a job claimed but never
    checkpointed.
    """
    steps = ("s1", "s2", "s3", "s4")
    done: set[tuple[str, str]] = set()
    rerun: set[tuple[str, str]] = set()
    for job_id, raw in query(db, "SELECT job_id, state FROM jobs"):
        if raw is None:
            rerun.update((job_id, s) for s in steps)
            continue
        state = json.loads(raw)
        finished = {rid for rid, st in state["routine_states"].items() if st.get("done")}
        done.update((job_id, rid) for rid in finished)
        pending = state.get("pending") or {}
        starts = {a["routine_id"] for a in pending.get("activations", [])}
        starts |= {rid for rid, slots in pending.get("slots", {}).items() if any(slots.values())}
        first = min((steps.index(s) for s in starts if s in steps), default=len(steps))
        rerun.update((job_id, s) for s in steps[first:] if s not in finished)
    return done, rerun


def declare_queue(url: str, queue: str, dlx: str) -> None:
    """Declare ``queue`` as the daemon would, so messages can be queued before it starts."""

    async def go() -> None:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            await channel.declare_queue(queue, durable=True, arguments=queue_arguments(queue, dlx))
        finally:
            await connection.close()

    asyncio.run(go())


def bulk_publish(
    url: str, queue: str, messages: Iterable[tuple[bytes, dict[str, Any]]], batch: int = 500
) -> int:
    """Publish persistent ``(body, properties)`` pairs with confirms, ``batch`` at a time."""

    async def go() -> int:
        sent = 0
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            pending: list[Any] = []
            for body, props in messages:
                message = aio_pika.Message(
                    body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props
                )
                pending.append(channel.default_exchange.publish(message, routing_key=queue))
                if len(pending) >= batch:
                    await asyncio.gather(*pending)
                    sent += len(pending)
                    pending = []
            await asyncio.gather(*pending)
            return sent + len(pending)
        finally:
            await connection.close()

    return asyncio.run(go())


def json_messages(ids: Iterable[str], **extra: Any) -> list[tuple[bytes, dict[str, Any]]]:
    """``{"i": n, **extra}`` bodies with the given message ids."""
    return [
        (json.dumps({"i": n, **extra}).encode(), {"message_id": mid}) for n, mid in enumerate(ids)
    ]


def queue_counts(queue: str, node: str | None = None) -> tuple[int, int]:
    """``(ready, unacked)`` of ``queue`` from ``rabbitmqctl`` (on ``node`` if given)."""
    target = ["-n", node] if node else []
    out = subprocess.run(
        [
            "rabbitmqctl",
            *target,
            "list_queues",
            "-q",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {queue} not listed")


def rabbitmqctl(*args: str, timeout: float = 60) -> None:
    subprocess.run(["rabbitmqctl", *args], capture_output=True, check=True, timeout=timeout)


def broker_up(url: str) -> bool:
    """True once a connection to ``url`` succeeds."""

    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=2)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception:
        return False
    return True


class Sampler:
    """Samples a daemon's /proc figures; the caller decides when (each wait step)."""

    def __init__(self, daemon: FaultDaemon) -> None:
        self.daemon = daemon
        self.samples: list[tuple[float, dict[str, int]]] = []

    def sample(self) -> dict[str, int]:
        values = self.daemon.proc_status()
        self.samples.append((time.monotonic(), values))
        return values

    def peak(self, key: str) -> int:
        return max(v[key] for _, v in self.samples)


def report(name: str, **figures: Any) -> None:
    """Print one result line (``pytest -s`` shows it; docs/reliability.md quotes them)."""
    text = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nFAULT {name}: {text}", flush=True)
    out = os.environ.get("FAULT_REPORT")
    if out:
        with open(out, "a") as handle:
            handle.write(f"{name}: {text}\n")


class PrivateBroker:
    """A RabbitMQ node of our own (``rabbitmq-server -detached`` on free ports).

    Broker outages are made with ``rabbitmqctl stop_app`` on this node only, so the
    shared broker other tests use never goes down. ``stop()`` halts the node.
    """

    def __init__(self, base: Path) -> None:
        self.amqp_port = integration.free_port()
        self.node = f"rtxfault{os.getpid()}x{self.amqp_port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"
        self.base = base
        self.env = dict(
            os.environ,
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(integration.free_port()),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "plugins"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_PID_FILE=str(base / "pid"),
        )

    def start(self, timeout: float = 90) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
        )
        # The server drops to the rabbitmq user when started as root; it must own its dirs.
        subprocess.run(["chown", "-R", "rabbitmq", str(self.base)], check=False)
        subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=self.env,
            check=True,
            timeout=60,
            capture_output=True,
            cwd=self.base,
        )
        wait_for(lambda: broker_up(self.url), timeout, interval=0.5)

    def ctl(self, *args: str, timeout: float = 60) -> None:
        rabbitmqctl("-n", self.node, *args, timeout=timeout)

    def stop(self) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, "stop"], capture_output=True, timeout=60, check=False
        )

    def queue_counts(self, queue: str) -> tuple[int, int]:
        return queue_counts(queue, node=self.node)


def watch(predicate: Callable[[], bool], seconds: float, interval: float = 0.2) -> int:
    """Assert ``predicate`` holds at every sample for ``seconds``; returns the sample count."""
    end = time.monotonic() + seconds
    samples = 0

    def holds_until_end() -> bool:
        nonlocal samples
        samples += 1
        assert predicate(), f"stopped holding after {samples} samples: {predicate}"
        return time.monotonic() >= end

    wait_for(holds_until_end, seconds + 30, interval)
    return samples
