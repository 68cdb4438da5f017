"""Helpers of the fault suite, daemon side: config, the daemon subprocess, counting.

``wait_for``, ``free_port``, the ``Broker`` helper and the ``Daemon`` subprocess
wrapper come from ``tests/integration/daemon_harness.py`` (loaded by path under its
own module name, so this suite does not depend on how pytest names the integration
package). Everything is counted from the outside: the daemon's SQLite store
(read-only connections), the marker file the ``fault_flows`` steps append to,
broker queue depths, and ``/proc/<pid>`` of the daemon. Broker-side helpers are in ``faultbroker``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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
wait_for = integration.wait_for

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


def durable_steps(
    db: Path, ran: Iterable[tuple[str, str]] = ()
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """``(done, maybe_rerun)`` from the store's snapshots after a kill.

    ``done``: steps a checkpoint shows finished (they must never run again).
    ``maybe_rerun``: steps resuming may run again: in flight or queued in the
    snapshot, downstream of such a step, every step of a job claimed but never
    checkpointed, and the steps in ``ran`` (those that ran before the kill) of jobs
    not on record at all: a delivery's job may start before its claim commits, and
    its redelivery then runs it again under the same job id.
    """
    steps = ("s1", "s2", "s3", "s4")
    done: set[tuple[str, str]] = set()
    rerun: set[tuple[str, str]] = set()
    rows = query(db, "SELECT job_id, state FROM jobs")
    recorded = {job_id for job_id, _ in rows}
    rerun.update(key for key in ran if key[0] not in recorded)
    for job_id, raw in rows:
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
