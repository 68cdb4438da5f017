"""The intake's batching and capacity, with fake deliveries and a fake launcher (no broker)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

from daemon.amqp.consumer import QueueBinding
from daemon.amqp.intake import Intake, _Capacity
from daemon.launcher import Launched, LaunchRequest


class FakeMessage:
    """Just what the intake reads of an aio-pika delivery."""

    def __init__(self, i: int, on_ack: Callable[[], None]) -> None:
        self.body = json.dumps({"i": i}).encode()
        self.message_id = f"m{i}"
        self.reply_to = None
        self.correlation_id = None
        self.redelivered = False
        self.channel = object()
        self.delivery_tag = 1  # the first delivery of its own channel
        self.processed = False
        self.acked = False
        self._on_ack = on_ack

    async def ack(self, multiple: bool = False) -> None:
        self.acked = self.processed = True
        self._on_ack()

    async def nack(self, requeue: bool = True) -> None:
        self.processed = True


class FakeLauncher:
    """Starts every job at once; a job ends when the test resolves its future."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.batches: list[int] = []
        self.requests: list[LaunchRequest] = []

    async def launch_many(
        self,
        requests: Sequence[LaunchRequest],
        wait_durable: bool = False,
        on_started: Callable[[], None] | None = None,
        start_first: bool = False,
    ) -> list[Launched | Exception]:
        assert start_first  # deliveries' jobs start before their claims commit
        self.batches.append(len(requests))
        self.requests += requests
        if on_started is not None:
            on_started()
        loop = asyncio.get_running_loop()
        launched: list[Launched | Exception] = []
        for request in requests:
            assert request.dedupe_key is not None
            ended: asyncio.Future[dict[str, Any]] = loop.create_future()
            self.running[request.dedupe_key] = ended
            launched.append(Launched(request.dedupe_key, True, ended, True))
        return launched

    async def durable(self, job_id: str) -> bool:
        return True

    def finish_all(self) -> None:
        for ended in self.running.values():
            if not ended.done():
                ended.set_result({})


class NoMetrics:
    def message(self, queue: str, outcome: str) -> None: ...

    def dead_lettered(self, queue: str) -> None: ...


def make_intake(launcher: FakeLauncher, capacity: int, queues: Sequence[str]) -> Intake:
    return Intake(
        bindings=[QueueBinding(queue=q, flow="f", trigger=f"amqp:{q}") for q in queues],
        launcher=cast(Any, launcher),
        publisher=cast(Any, None),
        outbox=cast(Any, None),
        metrics=NoMetrics(),
        bridge=cast(Any, None),
        ack_mode="on_complete",
        capacity=capacity,
    )


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait on the loop until ``predicate()`` holds (checked after every loop step)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0)


def test_a_batch_larger_than_the_capacity_is_started_in_parts_and_all_are_acked() -> None:
    # Two queues with prefetch 4 each can hand over 8 deliveries at once with capacity 4.
    async def main() -> None:
        launcher = FakeLauncher()
        intake = make_intake(launcher, capacity=4, queues=["q1", "q2"])
        acked: list[int] = []
        messages = [FakeMessage(i, lambda: acked.append(1)) for i in range(8)]
        for i, message in enumerate(messages):
            intake.on_message("q1" if i < 4 else "q2", cast(Any, message))
        await until(lambda: len(launcher.running) == 4)
        assert len(acked) == 0  # on_complete: acked when the jobs end
        launcher.finish_all()
        await until(lambda: len(launcher.running) == 8)
        launcher.finish_all()
        await until(lambda: len(acked) == 8)
        assert sum(launcher.batches) == 8 and max(launcher.batches) <= 4

    asyncio.run(main())


def test_running_jobs_hold_capacity_until_they_end() -> None:
    async def main() -> None:
        launcher = FakeLauncher()
        intake = make_intake(launcher, capacity=2, queues=["q"])
        acked: list[int] = []
        for i in range(5):
            intake.on_message("q", cast(Any, FakeMessage(i, lambda: acked.append(1))))
        await until(lambda: len(launcher.running) == 2)
        for _ in range(5):  # give the intake every chance to start more than it may
            await asyncio.sleep(0)
        assert len(launcher.running) == 2
        launcher.finish_all()
        await until(lambda: len(launcher.running) == 4)
        launcher.finish_all()
        await until(lambda: len(launcher.running) == 5)
        launcher.finish_all()
        await until(lambda: len(acked) == 5)

    asyncio.run(main())


def test_capacity_takes_what_is_free_and_waits_only_when_nothing_is() -> None:
    async def main() -> None:
        capacity = _Capacity(3)
        assert await capacity.take_some(2) == 2
        assert await capacity.take_some(5) == 1
        waiting = asyncio.ensure_future(capacity.take_some(4))
        await asyncio.sleep(0)
        assert not waiting.done()
        capacity.give(2)
        assert await asyncio.wait_for(waiting, 1) == 2
        cancelled = asyncio.ensure_future(capacity.take_some(1))
        await asyncio.sleep(0)
        cancelled.cancel()
        capacity.give()
        assert await capacity.take_some(1) == 1  # the cancelled waiter took nothing

    asyncio.run(main())


def test_capacity_serves_waiters_before_newcomers() -> None:
    async def main() -> None:
        capacity = _Capacity(1)
        assert await capacity.take_some(1) == 1
        first = asyncio.ensure_future(capacity.take_some(3))
        await asyncio.sleep(0)
        capacity.give()  # handed to the waiter at once
        newcomer = asyncio.ensure_future(capacity.take_some(1))
        await asyncio.sleep(0)
        assert await asyncio.wait_for(first, 1) == 1
        assert not newcomer.done()
        capacity.give()
        assert await asyncio.wait_for(newcomer, 1) == 1

    asyncio.run(main())


def test_a_redelivered_message_is_claimed_before_its_job_starts() -> None:
    # Its job may have killed the process: only a job on record can be quarantined.
    async def main() -> None:
        launcher = FakeLauncher()
        intake = make_intake(launcher, capacity=4, queues=["q"])
        fresh, again = FakeMessage(1, lambda: None), FakeMessage(2, lambda: None)
        again.redelivered = True
        intake.on_message("q", cast(Any, fresh))
        intake.on_message("q", cast(Any, again))
        await until(lambda: len(launcher.requests) == 2)
        assert [r.claim_first for r in launcher.requests] == [False, True]

    asyncio.run(main())
