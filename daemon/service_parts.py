"""Small builders the service uses: settings -> component inputs, and store adapters.

Kept apart from :mod:`daemon.service` so the lifecycle code reads as a sequence
of steps, and so each translation is testable on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from importlib import metadata
from typing import Any

from daemon.amqp import QueueBinding, ReplyTarget
from daemon.checkpoints.sqlite import SqliteCheckpointStore
from daemon.runtime_hooks import TERMINAL_STATUSES, Checkpointer
from daemon.settings import AmqpTrigger, CronTrigger, IntervalTrigger, StoreSettings, Trigger
from daemon.timers import TimerSpec
from routilux.monitoring.flow_registry import FlowRegistry
from routilux.runtime import Runtime


def version() -> str:
    """The installed distribution's version (``build_info``)."""
    try:
        return metadata.version("routilux")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def open_store(section: StoreSettings) -> SqliteCheckpointStore:
    """Open the SQLite store (blocking; raises a StoreError naming the path)."""
    return SqliteCheckpointStore(
        str(section.path),
        synchronous=section.synchronous,
        retention_days=section.retention_days,
        max_resumes=section.max_resumes,
    )


def start_runtime(
    threads: int, checkpointer: Checkpointer, registry: FlowRegistry | None = None
) -> Runtime:
    """The engine, checkpointing every job through ``checkpointer``.

    Finished jobs are not kept in memory: the store is the daemon's record of them,
    and 10,000 kept JobStates (the Runtime's default) gave the cyclic GC ~150,000
    live objects to walk, in full collections of 50-85 ms that stalled every thread.
    """
    return Runtime(
        thread_pool_size=threads,
        checkpointer=checkpointer,
        registry=registry,
        max_finished_jobs=0,
    )


def queue_bindings(triggers: Sequence[Trigger]) -> list[QueueBinding]:
    """One binding per ``type = "amqp"`` trigger."""
    return [
        QueueBinding(queue=t.queue, flow=t.flow, trigger=t.name, entry=t.entry)
        for t in triggers
        if isinstance(t, AmqpTrigger)
    ]


def timer_specs(triggers: Sequence[Trigger]) -> list[TimerSpec]:
    """One spec per interval/cron trigger, named like ``jobs.trigger``."""
    specs = []
    for t in triggers:
        if not isinstance(t, (IntervalTrigger, CronTrigger)):
            continue
        spec = functools.partial(
            TimerSpec,
            trigger_id=t.name,
            flow=t.flow,
            params=dict(t.params),
            catch_up=t.catch_up,
            max_instances=t.max_instances,
        )
        if isinstance(t, IntervalTrigger):
            specs.append(spec(kind="interval", seconds=t.seconds))
        else:
            specs.append(spec(kind="cron", cron=t.cron, timezone=t.timezone))
    return specs


class StoreLedger:
    """:class:`daemon.timers.Ledger` on the store's ``schedule_runs`` table."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def last_slot(self, trigger_id: str) -> datetime | None:
        last = self._store.last_schedule_run(trigger_id)
        return datetime.fromisoformat(last) if last else None

    def record_slot(self, trigger_id: str, slot: datetime) -> None:
        self._store.claim_schedule_run(trigger_id, slot.isoformat())


class StoreOutbox:
    """:class:`daemon.amqp.publisher.ReplyOutbox` on the store's ``outbox`` table.

    The row is added when the job is claimed (before it can end), so a crash
    between the job's end and the publish still leaves the reply pending; its body
    is built from the job's terminal snapshot at publish time.
    """

    def __init__(self, store: Any) -> None:
        self._store = store

    def add_reply(self, job_id: str, reply_to: str, correlation_id: str | None) -> None:
        self._store.add_outbox(job_id, reply_to, correlation_id, {})

    def pending_replies(self) -> list[tuple[ReplyTarget, dict[str, Any] | None]]:
        pending = []
        for entry in self._store.pending_outbox():
            row = self._store.get_job(entry.job_id)
            ended = row is not None and row.status in TERMINAL_STATUSES and row.state is not None
            target = ReplyTarget(entry.job_id, entry.reply_to, entry.correlation_id)
            pending.append((target, row.state if ended else None))
        return pending

    def mark_replied(self, job_id: str) -> None:
        self._store.finish_outbox(job_id)
