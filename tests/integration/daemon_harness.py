"""Helpers of the daemon integration tests: a broker client and a daemon subprocess.

Self-contained (no package-relative imports), so other suites can load it by path.
Fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it is truthy (observing another process); fail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """Blocking helpers over short aio-pika connections (tests only)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.created: list[str] = []

    def _run(self, coro_fn: Callable[[aio_pika.abc.AbstractChannel], Any]) -> Any:
        async def main() -> Any:
            connection = await aio_pika.connect(self.url)
            try:
                channel = await connection.channel(publisher_confirms=True)
                return await coro_fn(channel)
            finally:
                await connection.close()

        return asyncio.run(main())

    def publish(self, queue: str, bodies: list[bytes | dict[str, Any]], **props: Any) -> None:
        """Publish persistent messages to ``queue`` via the default exchange (confirmed)."""

        async def go(channel: aio_pika.abc.AbstractChannel) -> None:
            for body in bodies:
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                extra = dict(props)
                extra.setdefault("message_id", uuid.uuid4().hex)
                message = aio_pika.Message(
                    raw, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **extra
                )
                await channel.default_exchange.publish(message, routing_key=queue)

        self._run(go)

    def publish_many(self, queue: str, messages: list[tuple[dict[str, Any], str]]) -> None:
        """Publish ``(body, message_id)`` pairs."""

        async def go(channel: aio_pika.abc.AbstractChannel) -> None:
            for body, message_id in messages:
                message = aio_pika.Message(
                    json.dumps(body).encode(),
                    message_id=message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await channel.default_exchange.publish(message, routing_key=queue)

        self._run(go)

    def declare(self, queue: str) -> None:
        """Declare a plain durable queue (e.g. for replies)."""
        self.created.append(queue)

        async def go(channel: aio_pika.abc.AbstractChannel) -> None:
            await channel.declare_queue(queue, durable=True)

        self._run(go)

    def drain(self, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Take every message now in ``queue`` (acked)."""

        async def go(channel: aio_pika.abc.AbstractChannel) -> list[Any]:
            q = await channel.declare_queue(queue, passive=True)
            got = []
            while (message := await q.get(fail=False)) is not None:
                await message.ack()
                got.append(message)
            return got

        return list(self._run(go))

    def count(self, queue: str) -> int:
        """Ready messages in ``queue`` (unacked ones are not counted by the broker)."""

        async def go(channel: aio_pika.abc.AbstractChannel) -> int:
            q = await channel.declare_queue(queue, passive=True)
            return int(q.declaration_result.message_count or 0)

        return int(self._run(go))

    def delete(self, *queues: str) -> None:
        async def go(channel: aio_pika.abc.AbstractChannel) -> None:
            for name in queues:
                await channel.queue_delete(name)

        self._run(go)


class Daemon:
    """A ``python -m daemon run`` subprocess with its own config, store and port."""

    def __init__(self, tmp: Path, config: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.store = tmp / "store.db"
        self.config_path = tmp / "daemon.toml"
        self.config_path.write_text(
            config.replace("@PORT@", str(self.port)).replace("@STORE@", str(self.store))
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.extra_env: dict[str, str] = {}

    def start(self, wait_ready: bool = True) -> Daemon:
        env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{REPO}", **self.extra_env)
        log = self.tmp / f"daemon-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run", "--config", str(self.config_path)],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self.wait_ready()
        return self

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_text()}")
            return self.http("/readyz")[0] == 200

        wait_for(ready, timeout)

    def metric(self, name: str, **labels: str) -> float:
        """Value of one sample on /metrics (0.0 when absent)."""
        _, text = self.http("/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            sample, _, label_text = key.partition("{")
            have = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if sample == name and have == want:
                return float(value)
        return 0.0

    def jobs(self) -> list[dict[str, Any]]:
        """Rows of the ``jobs`` table (read-only connection)."""
        if not self.store.exists():
            return []
        conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM jobs")]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def completed(self, trigger: str | None = None) -> list[dict[str, Any]]:
        return [
            j
            for j in self.jobs()
            if j["status"] == "completed" and (trigger is None or j["trigger"] == trigger)
        ]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def receiver_pid(self) -> int | None:
        """The pid of the daemon's AMQP receiver process, if one runs now."""
        if self.proc is None:
            return None
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and b"daemon.amqp.receiver" in cmdline:
                return int(stat.parent.name)
        return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


CONFIG = """
[runtime]
threads = 4
shutdown_timeout = {shutdown_timeout}
[store]
path = "@STORE@"
synchronous = "normal"
[amqp]
url = "{url}"
prefetch = {prefetch}
ack = "{ack}"
dead_letter_exchange = "{prefix}.dlx"
[metrics]
host = "127.0.0.1"
port = @PORT@
[flows]
modules = ["daemon_test_flows"]
"""

AMQP_TRIGGER = """
[[triggers]]
type = "amqp"
flow = "chain"
queue = "{queue}"
"""

INTERVAL_TRIGGER = """
[[triggers]]
type = "interval"
flow = "tick"
id = "{trigger_id}"
seconds = {seconds}
catch_up = "{catch_up}"
params = {{ source = "interval" }}
"""
