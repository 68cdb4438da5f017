"""Fixtures of the fault suite: the broker (from tests/integration) and daemon factories.

Every test gets a unique queue (``<prefix>.in``), its own dead-letter exchange,
store and metrics port; its queues and exchange are deleted afterwards and every
daemon it started is SIGKILLed if still running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faultbroker import DEFAULT_URL, Broker, PrivateBroker, broker_up
from faultkit import FaultDaemon, render_config


def use_private_broker() -> bool:
    """``FAULT_PRIVATE_BROKER=1``: run every test on this suite's own RabbitMQ node.

    The long runs use it, so that other test runs stopping or loading the shared
    broker cannot disturb a 30-minute measurement.
    """
    return os.environ.get("FAULT_PRIVATE_BROKER") == "1"


@pytest.fixture(scope="session")
def broker_node(request: pytest.FixtureRequest) -> str | None:
    """The RabbitMQ node ``rabbitmqctl`` must ask (None: the local default node)."""
    if use_private_broker():
        return str(request.getfixturevalue("private_broker").node)
    return None


@pytest.fixture(scope="session")
def amqp_url(request: pytest.FixtureRequest) -> str:
    """The broker under test; skipped if unreachable, failed under ROUTILUX_REQUIRE_BROKER=1."""
    if use_private_broker():
        return str(request.getfixturevalue("private_broker").url)
    url = os.environ.get("ROUTILUX_TEST_AMQP_URL", DEFAULT_URL)
    if not broker_up(url):
        if os.environ.get("ROUTILUX_REQUIRE_BROKER") == "1":
            pytest.fail(f"RabbitMQ required but unreachable at {url}")
        pytest.skip(f"RabbitMQ unreachable at {url}")
    return url


@pytest.fixture
def prefix() -> str:
    """A unique queue/exchange prefix for one test."""
    return f"rtx-fault-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def broker(amqp_url: str, broker_node: str | None, prefix: str) -> Iterator[Broker]:
    helper = Broker(amqp_url, broker_node)
    helper.created += [f"{prefix}.in", f"{prefix}.in.dlq"]
    yield helper
    helper.delete(*helper.created)

    async def drop_exchange(channel: Any) -> None:
        await channel.exchange_delete(f"{prefix}.dlx")

    helper._run(drop_exchange)


@pytest.fixture
def queue(prefix: str) -> str:
    return f"{prefix}.in"


@pytest.fixture
def make_daemon(
    tmp_path: Path, amqp_url: str, prefix: str, broker: Broker
) -> Iterator[Callable[..., FaultDaemon]]:
    """Factory: ``make_daemon(start=True, **render_config options)`` -> FaultDaemon.

    ``url`` defaults to the shared broker; the queue is ``<prefix>.in``.
    """
    made: list[FaultDaemon] = []

    def make(*, start: bool = True, store: Path | None = None, **options: Any) -> FaultDaemon:
        config = render_config(
            url=options.pop("url", amqp_url),
            queue=f"{prefix}.in",
            dlx=f"{prefix}.dlx",
            store=str(store) if store is not None else "@STORE@",
            **options,
        )
        daemon = FaultDaemon(tmp_path, config, store=store)
        made.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in made:
        daemon.kill()


@pytest.fixture(scope="session")
def private_broker() -> Iterator[PrivateBroker]:
    """A RabbitMQ node only this suite uses, for outage tests; skipped where impossible."""
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        pytest.skip("broker outage needs a local rabbitmq-server/rabbitmqctl (not installed)")
    # Not under pytest's tmp dir: that is private to root, and the node runs as rabbitmq.
    base = Path(tempfile.mkdtemp(prefix="rtx-fault-rabbit-"))
    node = PrivateBroker(base)
    try:
        node.start()
    except Exception as exc:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"cannot start a private RabbitMQ node here: {exc}")
    yield node
    node.stop()
    shutil.rmtree(base, ignore_errors=True)
