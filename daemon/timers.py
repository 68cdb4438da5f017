"""Interval and cron triggers on APScheduler 3's AsyncIOScheduler.

Every firing is a *slot*: the scheduled time (UTC) of one run. A slot's run id
is ``<trigger id>@<slot ISO>``; the service claims the job with that run id as
its dedupe key, so a slot never starts two jobs, even across restarts. A
*ledger* remembers the newest slot started per trigger; on start, slots missed
while the daemon was down are caught up by policy:

* ``skip`` — none run;
* ``once`` (default) — only the newest missed slot runs;
* ``all`` — every missed slot runs, oldest first (capped at :data:`MAX_CATCH_UP`).

Interval slots are aligned to :data:`INTERVAL_ANCHOR` so they are the same
instants across restarts. Cron slots follow the trigger's time zone (DST-aware,
via zoneinfo); run ids are in UTC, so a local time repeated by a DST change
still gives distinct ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

logger = logging.getLogger(__name__)

#: Interval slots are multiples of the interval counted from this instant.
INTERVAL_ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
#: Upper bound on slots caught up for one trigger with ``catch_up = "all"``.
MAX_CATCH_UP = 1000
#: Name of the executor that passes scheduled times to the fire callback.
_EXECUTOR = "slots"

#: Smallest step past a slot when looking for the next one.
_TICK = timedelta(microseconds=1)

CatchUp = Literal["skip", "once", "all"]


@dataclass(frozen=True)
class TimerSpec:
    """One interval or cron trigger, as the service hands it to :class:`TimerSource`."""

    trigger_id: str
    flow: str
    kind: Literal["interval", "cron"]
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    cron: str | None = None
    timezone: str = "UTC"
    catch_up: CatchUp = "once"
    max_instances: int = 1

    def build_trigger(self) -> BaseTrigger:
        """The APScheduler trigger for this spec; raises ``ValueError`` if invalid."""
        if self.kind == "interval":
            if not self.seconds or self.seconds <= 0:
                raise ValueError(f"trigger {self.trigger_id}: seconds must be > 0")
            return IntervalTrigger(
                seconds=self.seconds, start_date=INTERVAL_ANCHOR, timezone=timezone.utc
            )
        if not self.cron:
            raise ValueError(f"trigger {self.trigger_id}: cron expression missing")
        return CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(self.timezone))


class Ledger(Protocol):
    """Newest started slot per trigger. Blocking calls; the source runs them off-loop."""

    def last_slot(self, trigger_id: str) -> datetime | None: ...

    def record_slot(self, trigger_id: str, slot: datetime) -> None: ...


class MemoryLedger:
    """In-memory :class:`Ledger` for tests."""

    def __init__(self) -> None:
        self.slots: dict[str, datetime] = {}

    def last_slot(self, trigger_id: str) -> datetime | None:
        return self.slots.get(trigger_id)

    def record_slot(self, trigger_id: str, slot: datetime) -> None:
        current = self.slots.get(trigger_id)
        if current is None or slot > current:
            self.slots[trigger_id] = slot


#: ``launch(spec, slot)`` claims and starts the slot's job; it returns an awaitable that
#: ends with the job, or ``None`` when the slot had already started a job.
Launch = Callable[[TimerSpec, datetime], Awaitable["Awaitable[Any] | None"]]


def run_id(trigger_id: str, slot: datetime) -> str:
    """The unique id of one slot of one trigger (UTC, microsecond precision)."""
    return f"{trigger_id}@{slot.astimezone(timezone.utc).isoformat()}"


def slots_between(trigger: BaseTrigger, after: datetime, until: datetime) -> list[datetime]:
    """Slots ``s`` with ``after < s <= until``, oldest first, at most ``MAX_CATCH_UP + 1``.

    Only the newest slots are kept when there are more, as catch-up never needs older ones.
    """
    found: list[datetime] = []
    # Step in UTC: wall-clock arithmetic on zoned datetimes goes backwards in a DST fall-back.
    cursor = after.astimezone(timezone.utc)
    until = until.astimezone(timezone.utc)
    while True:
        nxt = trigger.get_next_fire_time(None, cursor + _TICK)
        if nxt is None or nxt.astimezone(timezone.utc) > until:
            return found
        found.append(nxt)
        if len(found) > MAX_CATCH_UP:
            del found[0]
        # Never step back in real time, whatever the trigger answers around a DST change.
        cursor = max(nxt.astimezone(timezone.utc), cursor + _TICK)


def missed_slots(
    trigger: BaseTrigger, last: datetime | None, now: datetime, policy: CatchUp
) -> list[datetime]:
    """Slots to catch up after a downtime; ``last`` is the ledger's newest slot.

    With no ledger entry (first start) nothing is missed.
    """
    if last is None or policy == "skip":
        return []
    slots = slots_between(trigger, last, now)
    if policy == "once":
        return slots[-1:]
    return slots[-MAX_CATCH_UP:]


class _SlotExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """Runs a coroutine job as ``func(*args, run_times=[...])`` on the loop.

    APScheduler's own coroutine runner does not tell the job which slot it is
    running; the ledger and run ids need exactly that.
    """

    def _do_submit_job(self, job: Job, run_times: Sequence[datetime]) -> None:
        task = self._eventloop.create_task(job.func(*job.args, run_times=list(run_times)))

        def done(finished: asyncio.Task[None]) -> None:
            self._pending_futures.discard(finished)
            if finished.cancelled():  # stopping: not an error of the job
                self._run_job_success(job.id, [])
            elif finished.exception() is not None:
                exc = finished.exception()
                self._run_job_error(job.id, exc, exc.__traceback__ if exc else None)
            else:
                self._run_job_success(job.id, [])

        task.add_done_callback(done)
        self._pending_futures.add(task)


class TimerSource:
    """Owns the scheduler for every interval/cron trigger.

    Lifecycle: :meth:`start` (catch-up, then scheduling) -> :meth:`pause` ->
    :meth:`stop`. All methods run on the service's loop.
    """

    def __init__(
        self,
        specs: Iterable[TimerSpec],
        ledger: Ledger,
        launch: Launch,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._specs = list(specs)
        self._ledger = ledger
        self._launch = launch
        self._clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._catch_up_tasks: set[asyncio.Task[None]] = set()

    async def catch_up(self) -> list[asyncio.Task[None]]:
        """Start one background task per trigger that runs its missed slots in order."""
        now = self._clock()
        tasks = []
        for spec in self._specs:
            last = await asyncio.to_thread(self._ledger.last_slot, spec.trigger_id)
            slots = missed_slots(spec.build_trigger(), last, now, spec.catch_up)
            if slots:
                logger.info("trigger %s: catching up %d missed run(s)", spec.trigger_id, len(slots))
                task = asyncio.get_running_loop().create_task(self._run_slots(spec, slots))
                self._catch_up_tasks.add(task)
                task.add_done_callback(self._catch_up_tasks.discard)
                tasks.append(task)
        return tasks

    async def start(self) -> None:
        """Catch up missed slots, then schedule every trigger."""
        if self._scheduler is not None:
            raise RuntimeError("TimerSource already started")
        await self.catch_up()
        scheduler = AsyncIOScheduler(
            event_loop=asyncio.get_running_loop(),
            executors={_EXECUTOR: _SlotExecutor()},
            timezone=timezone.utc,
        )
        for spec in self._specs:
            scheduler.add_job(
                self._run_scheduled,
                trigger=spec.build_trigger(),
                args=[spec],
                id=spec.trigger_id,
                executor=_EXECUTOR,
                max_instances=spec.max_instances,
                coalesce=spec.catch_up != "all",
                misfire_grace_time=None,
            )
        scheduler.start()
        self._scheduler = scheduler

    def pause(self) -> None:
        """Stop firing new slots; running ones go on."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.pause()
        for task in list(self._catch_up_tasks):
            task.cancel()

    def stop(self) -> None:
        """Shut the scheduler down; slot tasks still running are cancelled."""
        self.pause()
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None

    async def _run_scheduled(self, spec: TimerSpec, *, run_times: Sequence[datetime] = ()) -> None:
        """What the scheduler runs (through :class:`_SlotExecutor`) when slots come due.

        ``run_times`` has a default only because APScheduler checks, when a job is
        added, that the call it will make supplies every keyword-only argument.
        """
        await self._run_slots(spec, list(run_times))

    async def _run_slots(self, spec: TimerSpec, slots: list[datetime]) -> None:
        """Launch ``slots`` in order, recording each in the ledger once claimed."""
        for slot in slots:
            slot = slot.astimezone(timezone.utc)
            try:
                ended = await self._launch(spec, slot)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("trigger %s: run %s failed to start", spec.trigger_id, slot)
                continue
            # Recorded only once the job is claimed: a crash before that leaves the
            # slot missed, so the next start catches it up instead of losing it.
            await asyncio.to_thread(self._ledger.record_slot, spec.trigger_id, slot)
            if ended is not None:
                await ended  # holds the instance, so max_instances bounds running jobs
