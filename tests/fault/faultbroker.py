"""Helpers of the fault suite, broker side: publishing, queue depths, a private node.

Queue depths come from ``rabbitmqctl`` (ready and unacked separately, which a
passive declare cannot tell apart). :class:`PrivateBroker` is a RabbitMQ node of
this suite's own, for outages that must not hit the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from faultkit import integration, wait_for

from daemon.amqp.consumer import queue_arguments

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Broker(integration.Broker):  # type: ignore[misc,name-defined]
    """The integration ``Broker`` helper, knowing which node ``rabbitmqctl`` must ask."""

    def __init__(self, url: str, node: str | None = None) -> None:
        super().__init__(url)
        self.node = node

    def counts(self, queue: str) -> tuple[int, int]:
        """``(ready, unacked)`` of ``queue``."""
        return queue_counts(queue, node=self.node)


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
    """``(ready, unacked)`` of ``queue`` from ``rabbitmqctl`` (on ``node`` if given).

    Skips the calling test where ``rabbitmqctl`` is not installed (remote broker).
    """
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl on this machine to count unacked messages")
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
