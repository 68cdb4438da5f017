"""Integration fixtures: the RabbitMQ broker and a daemon subprocess.

The broker URL comes from ``ROUTILUX_TEST_AMQP_URL`` (default: local guest). An
unreachable broker skips these tests, unless ``ROUTILUX_REQUIRE_BROKER=1`` (CI),
which fails them. Every test gets its own queue prefix and deletes its queues.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from .daemon_harness import (
    AMQP_TRIGGER,
    CONFIG,
    DEFAULT_URL,
    INTERVAL_TRIGGER,
    Broker,
    Daemon,
)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    url = os.environ.get("ROUTILUX_TEST_AMQP_URL", DEFAULT_URL)

    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        if os.environ.get("ROUTILUX_REQUIRE_BROKER") == "1":
            pytest.fail(f"RabbitMQ required but unreachable at {url}: {exc}")
        pytest.skip(f"RabbitMQ unreachable at {url}: {exc}")
    return url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, for fixtures to see how it went."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def broker(amqp_url: str) -> Iterator[Broker]:
    helper = Broker(amqp_url)
    yield helper
    if helper.created:
        helper.delete(*helper.created)


@pytest.fixture
def prefix() -> str:
    """A unique queue/trigger prefix for one test."""
    return f"rtx-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_daemon(
    request: pytest.FixtureRequest, tmp_path: Path, amqp_url: str, prefix: str, broker: Broker
) -> Iterator[Callable[..., Daemon]]:
    """Factory: ``make_daemon(queue=True, interval=None, ...)`` -> a started Daemon."""
    made: list[Daemon] = []

    def make(
        *,
        queue: bool = True,
        interval: float | None = None,
        catch_up: str = "once",
        url: str | None = None,
        ack: str = "on_checkpoint",
        prefetch: int = 20,
        shutdown_timeout: float = 10,
        start: bool = True,
        wait_ready: bool = True,
    ) -> Daemon:
        config = CONFIG.format(
            url=url or amqp_url,
            prefetch=prefetch,
            ack=ack,
            prefix=prefix,
            shutdown_timeout=shutdown_timeout,
        )
        if queue:
            config += AMQP_TRIGGER.format(queue=f"{prefix}.in")
            broker.created += [f"{prefix}.in", f"{prefix}.in.dlq"]
        if interval is not None:
            config += INTERVAL_TRIGGER.format(
                trigger_id=f"{prefix}-tick", seconds=interval, catch_up=catch_up
            )
        home = tmp_path / f"daemon-{len(made)}"  # each replica keeps its own store
        home.mkdir()
        daemon = Daemon(home, config)
        made.append(daemon)
        if start:
            daemon.start(wait_ready=wait_ready)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:  # the daemons' own account of the failure
        for index, daemon in enumerate(made):
            print(f"--- log of daemon {index} (last 8,000 characters) ---")
            print(daemon.log_text()[-8000:])
