"""The launcher: bounded waits on the store, and jobs started before their claims commit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.bridge import Bridge
from daemon.checkpoints import StoreLockedError
from daemon.checkpoints.sqlite import SqliteCheckpointStore
from daemon.launcher import Launched, Launcher, LaunchRequest, _bounded
from daemon.metrics import Metrics
from daemon.runtime_hooks import JobTracker
from routilux import Flow, Routine, Runtime
from routilux.monitoring.flow_registry import FlowRegistry


def test_a_request_not_started_in_time_is_withdrawn() -> None:
    async def main() -> None:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        with pytest.raises(asyncio.TimeoutError, match="did not commit the claims"):
            await _bounded(asyncio.wrap_future(future), future, 0.01, "claims")
        assert future.cancelled()

    asyncio.run(main())


def test_a_request_already_in_a_transaction_is_still_awaited() -> None:
    # Claims that commit after the timeout must not be dropped.
    async def main() -> int:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        assert future.set_running_or_notify_cancel()  # the writer has taken it
        asyncio.get_running_loop().call_later(0.05, future.set_result, 7)
        return await _bounded(asyncio.wrap_future(future), future, 0.01, "claims")

    assert asyncio.run(main()) == 7


# -- starting jobs before their claims commit (start_first) -------------------------


class Count(Routine):
    """Entry routine that counts its runs in ``runs`` (shared by the test's flow)."""

    def __init__(self, runs: list[int]) -> None:
        super().__init__()
        self.runs = runs
        self.define_slot("trigger")
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        self.runs.append(1)
        job_state.shared_data["n"] = trigger[0]["n"]


class Harness:
    """A Launcher over a real SQLite store and Runtime, on the running loop."""

    def __init__(self, db_path: str, *, busy_timeout_ms: int) -> None:
        self.runs: list[int] = []
        registry = FlowRegistry()
        flow = Flow("count")
        flow.add_routine(Count(self.runs), "count")
        registry.register_by_name("count", flow)
        self.store = SqliteCheckpointStore(db_path, busy_timeout_ms=busy_timeout_ms)
        bridge = Bridge(asyncio.get_running_loop(), threads=1)
        self.tracker = JobTracker(self.store, Metrics("test"), bridge)
        self.runtime = Runtime(thread_pool_size=2, checkpointer=self.tracker, registry=registry)
        self.launcher = Launcher(self.store, self.runtime, self.tracker, bridge)
        self.started: list[int] = []

    async def launch(self, key: str, n: int) -> Launched | Exception:
        request = LaunchRequest("count", {"n": n}, "amqp:q", key)
        [outcome] = await self.launcher.launch_many(
            [request], start_first=True, on_started=lambda: self.started.append(n)
        )
        return outcome

    def close(self) -> None:
        self.runtime.shutdown(wait=True, timeout=5)
        self.tracker.close()
        self.store.close()


def with_harness(
    db_path: str, busy_timeout_ms: int, body: Callable[[Harness], Awaitable[None]]
) -> None:
    """Run ``body(harness)`` on a fresh loop, closing the harness afterwards."""

    async def main() -> None:
        h = Harness(db_path, busy_timeout_ms=busy_timeout_ms)
        try:
            await body(h)
        finally:
            h.close()

    asyncio.run(main())


def lock_exclusively(db_path: str) -> sqlite3.Connection:
    """Another connection holding the write lock: the store's writer waits behind it."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def launch_uncommitted(
    h: Harness, db_path: str, key: str, n: int
) -> tuple[asyncio.Future[Launched | Exception], sqlite3.Connection]:
    """Launch a job while the writer is held off; returns once the job has run."""
    other = lock_exclusively(db_path)
    runs = len(h.runs)
    launch = asyncio.ensure_future(h.launch(key, n))
    await until(lambda: len(h.runs) == runs + 1)  # ran, with nothing committed yet
    return launch, other


def test_a_job_starts_before_its_claim_commits_and_launch_returns_after(tmp_path: Path) -> None:
    db_path = str(tmp_path / "jobs.db")

    async def body(h: Harness) -> None:
        launch, other = await launch_uncommitted(h, db_path, "k1", 7)
        assert h.store.key_owners(["k1"]) == {}
        assert not launch.done() and h.started == []  # the next batch waits for the commit
        other.execute("ROLLBACK")
        other.close()
        launched = await asyncio.wait_for(launch, 10)
        assert isinstance(launched, Launched) and launched.created and h.started == [7]
        assert launched.ended is not None
        assert (await asyncio.wait_for(launched.ended, 10))["shared_data"] == {"n": 7}
        assert await h.launcher.durable(launched.job_id)
        row = h.store.get_job(launched.job_id)
        assert row is not None
        assert (row.status, row.trigger, row.dedupe_key) == ("completed", "amqp:q", "k1")

    with_harness(db_path, 20_000, body)


def test_a_key_whose_claim_is_still_queued_is_claimed_first_and_is_a_duplicate(
    tmp_path: Path,
) -> None:
    db_path = str(tmp_path / "jobs.db")

    async def body(h: Harness) -> None:
        first, other = await launch_uncommitted(h, db_path, "k1", 1)
        again = asyncio.ensure_future(h.launch("k1", 2))
        for _ in range(20):  # every chance to start it, which it must not
            await asyncio.sleep(0.005)
        assert len(h.runs) == 1 and not again.done()
        other.execute("ROLLBACK")
        other.close()
        original, duplicate = await asyncio.wait_for(asyncio.gather(first, again), 10)
        assert isinstance(original, Launched) and isinstance(duplicate, Launched)
        assert not duplicate.created and duplicate.job_id == original.job_id
        assert len(h.runs) == 1

    with_harness(db_path, 20_000, body)


def test_a_committed_key_is_a_duplicate_without_a_store_transaction(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        first = await h.launch("k1", 1)
        assert isinstance(first, Launched) and first.created and first.ended is not None
        # The first job's own end commits later; wait for it so only the duplicate counts.
        await asyncio.wait_for(first.ended, 10)
        assert await h.launcher.durable(first.job_id)
        commits = h.store.stats().commits
        again = await h.launch("k1", 2)
        assert again == Launched(first.job_id, False, None)
        assert h.store.stats().commits == commits and len(h.runs) == 1

    with_harness(str(tmp_path / "jobs.db"), 5000, body)


def test_a_failing_store_gets_claims_first_so_nothing_starts(tmp_path: Path) -> None:
    db_path = str(tmp_path / "jobs.db")

    async def body(h: Harness) -> None:
        other = lock_exclusively(db_path)
        try:
            h.store.save({"job_id": "other", "flow_id": "count", "status": "running"})
            await until(lambda: not h.store.healthy)
            outcome = await h.launch("k1", 1)
            assert isinstance(outcome, StoreLockedError) and h.runs == []
        finally:
            other.execute("ROLLBACK")
            other.close()

    with_harness(db_path, 50, body)


def test_a_later_copy_in_the_batch_never_overtakes_one_that_claims_first(tmp_path: Path) -> None:
    # A redelivery next to a publisher's repeat: the redelivery claims first and owns the job.
    async def body(h: Harness) -> None:
        redelivered = LaunchRequest("count", {"n": 1}, "amqp:q", "k1", claim_first=True)
        repeat = LaunchRequest("count", {"n": 2}, "amqp:q", "k1")
        first, second = await h.launcher.launch_many([redelivered, repeat], start_first=True)
        assert isinstance(first, Launched) and first.created
        assert second == Launched(first.job_id, False, None)
        assert first.ended is not None
        assert (await asyncio.wait_for(first.ended, 10))["shared_data"] == {"n": 1}
        assert len(h.runs) == 1

    with_harness(str(tmp_path / "jobs.db"), 5000, body)


def test_a_keyed_job_after_its_predecessor_was_pruned_waits_for_its_own_commits(
    tmp_path: Path,
) -> None:
    # The same message id again after retention removed the first job: same job id,
    # and nothing the store remembers of the first job may count for the second.
    db_path = str(tmp_path / "jobs.db")

    async def body(h: Harness) -> None:
        first = await h.launch("k1", 1)
        assert isinstance(first, Launched) and first.ended is not None
        await asyncio.wait_for(first.ended, 10)
        assert await h.launcher.durable(first.job_id)
        pruner = sqlite3.connect(db_path)
        pruner.execute("DELETE FROM jobs WHERE job_id = ?", (first.job_id,))
        pruner.commit()
        pruner.close()
        launch, other = await launch_uncommitted(h, db_path, "k1", 2)
        assert not h.store.durable_future(first.job_id).done()  # nothing of it committed
        other.execute("ROLLBACK")
        other.close()
        again = await asyncio.wait_for(launch, 10)
        assert isinstance(again, Launched) and again.created
        assert again.job_id == first.job_id
        assert await h.launcher.durable(again.job_id)

    with_harness(db_path, 20_000, body)
