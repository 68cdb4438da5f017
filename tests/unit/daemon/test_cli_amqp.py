"""The CLI's AMQP commands against a real RabbitMQ: publish and dlq replay."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from cli_support import AMQP_URL, run_cli, write_config

from daemon.cli import EXIT_CONFIG, EXIT_OK

# -- publish / dlq replay (real RabbitMQ) -----------------------------------------------


async def _broker_reachable() -> bool:
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=3)
    except Exception:
        return False
    await connection.close()
    return True


@pytest.fixture
def broker() -> str:
    if not asyncio.run(_broker_reachable()):
        if os.environ.get("ROUTILUX_REQUIRE_BROKER") == "1":
            pytest.fail(f"RabbitMQ required but unreachable at {AMQP_URL}")
        pytest.skip(f"RabbitMQ unreachable at {AMQP_URL}")
    return AMQP_URL


@pytest.fixture
def queue_name(broker: str) -> Iterator[str]:
    """A unique queue and its .dlq, declared durable; both deleted afterwards."""
    name = f"test.cli.{uuid.uuid4().hex[:12]}"
    asyncio.run(_declare(name, name + ".dlq"))
    yield name
    asyncio.run(_delete(name, name + ".dlq"))


async def _declare(*names: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.declare_queue(name, durable=True)


async def _delete(*names: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


async def _drain(name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        queue = await (await connection.channel()).declare_queue(name, passive=True)
        messages = []
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            messages.append(message)
        return messages


async def _put(name: str, body: bytes, **properties: Any) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(body, **properties), name)


def amqp_config(tmp_path: Path, queue: str, url: str = AMQP_URL) -> Path:
    trigger = f'[[triggers]]\ntype = "amqp"\nflow = "orders"\nqueue = "{queue}"\n'
    return write_config(tmp_path, trigger, amqp_url=url)


def test_publish_sends_a_persistent_json_message_with_a_message_id(
    tmp_path: Path, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = amqp_config(tmp_path, queue_name)
    code, out, err = run_cli(
        capsys, "publish", "orders", "--data", '{"order_id": "A1"}', "--config", str(config)
    )
    assert code == EXIT_OK, err
    (message,) = asyncio.run(_drain(queue_name))
    assert json.loads(message.body) == {"order_id": "A1"}
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id and f"message_id={message.message_id}" in out
    code, _, _ = run_cli(
        capsys, "publish", "orders", "--data", "{}", "--message-id", "fixed-1",
        "--config", str(config),
    )  # fmt: skip
    assert [m.message_id for m in asyncio.run(_drain(queue_name))] == ["fixed-1"]


def test_publish_rejects_bad_data_unbound_flow_and_missing_queue(
    tmp_path: Path, broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = amqp_config(tmp_path, f"test.cli.absent.{uuid.uuid4().hex[:8]}")
    for argv, reason in [
        (["orders", "--data", "[1, 2]"], "must be a JSON object"),
        (["orders", "--data", "{oops"], "not valid JSON"),
        (["heartbeat", "--data", "{}"], "has no amqp trigger"),
        (["orders", "--data", "{}"], "does not exist"),
    ]:
        code, _, err = run_cli(capsys, "publish", *argv, "--config", str(config))
        assert code == EXIT_CONFIG and reason in err, err
        assert len(err.strip().splitlines()) == 1


def test_publish_with_the_broker_down_is_one_line_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = amqp_config(tmp_path, "q", url="amqp://guest:sekrit@127.0.0.1:1/")
    code, _, err = run_cli(capsys, "publish", "orders", "--data", "{}", "--config", str(config))
    assert code == EXIT_CONFIG
    assert (
        err.strip().splitlines() == [err.strip()]
        and "cannot connect to amqp://guest:***@127.0.0.1:1/" in err
    )
    assert "sekrit" not in err


def test_dlq_replay_moves_messages_back_without_dead_letter_headers(
    tmp_path: Path, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq = queue_name + ".dlq"
    for n in range(3):
        headers = {"x-routilux-error": "not a JSON object", "x-first-death-queue": queue_name}
        asyncio.run(_put(dlq, f"body-{n}".encode(), message_id=f"m{n}", headers=headers | {"k": n}))
    config = amqp_config(tmp_path, queue_name)
    code, out, err = run_cli(capsys, "dlq", "replay", queue_name, "--config", str(config))
    assert code == EXIT_OK, err
    assert out.strip() == f"moved 3 message(s) from {dlq} to {queue_name}"
    moved = asyncio.run(_drain(queue_name))
    assert [(m.body, m.message_id, m.headers) for m in moved] == [
        (f"body-{n}".encode(), f"m{n}", {"k": n}) for n in range(3)
    ]
    assert asyncio.run(_drain(dlq)) == []


def test_dlq_replay_of_an_unknown_queue_exits_1(
    tmp_path: Path, broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "")
    code, _, err = run_cli(capsys, "dlq", "replay", "test.cli.none.xyz", "--config", str(config))
    assert code == EXIT_CONFIG and "does not exist" in err
