"""AMQP load helpers shared by the daemon benchmark and its baseline consumers."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika

DEFAULT_URL = os.environ.get("ROUTILUX_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: Seconds any single phase may take before the round is reported as failed.
PHASE_TIMEOUT = 120.0
Timings = dict[str, float]  # message id -> unix time


async def publish_messages(url: str, queue: str, count: int, rate: float | None) -> Timings:
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


async def declare_queue(url: str, queue: str, arguments: dict[str, Any] | None = None) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=arguments)
    finally:
        await connection.close()


async def delete_queues(url: str, *queues: str) -> None:
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
