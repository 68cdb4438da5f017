"""JobRun: the live pending work of one job, and the one place that changes it.

One lock guards everything here: the job's slot queues, its in-flight activations,
its timers. Logic never runs under it. An activation is a unit of progress: it takes
its data out of the slots when it is scheduled, runs with the lock released, and on
return commits its emits, its state writes and its own removal from the in-flight set
in one locked step, followed by one checkpoint. The job is finished exactly when
nothing is in flight and no timer is pending (``_finish_if_idle``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from threading import RLock
from typing import Any, Protocol

from routilux.activation_policies import PolicyTiming, SlotView
from routilux.context import ActivationContext, current_activation
from routilux.error_handler import Action, decide
from routilux.errors import ActivationPolicyError, SlotQueueFullError
from routilux.flow import FlowPlan
from routilux.job_state import JobState
from routilux.records import ErrorInfo
from routilux.runtime.pending import Activation, TimerEntry, restore_pending
from routilux.runtime.timer_queue import TimerHandle
from routilux.status import ExecutionStatus

logger = logging.getLogger(__name__)


class Checkpointer(Protocol):
    """Receives a consistent ``JobState.to_dict()`` snapshot after every change."""

    def save(self, snapshot: dict[str, Any]) -> None: ...


#: ``save_deferred(job_state, seq)``: the optional faster form of ``save`` for
#: checkpointers that keep only the newest snapshot of a job per write. The job changed
#: to checkpoint ``seq``; ``job_state.to_dict()`` (thread-safe, callable any time later)
#: returns a consistent snapshot at least that new. Snapshots the store would throw
#: away are then never built.
SaveDeferred = Callable[[JobState, int], None]


@dataclass(frozen=True)
class RunServices:
    """What a JobRun borrows from its Runtime."""

    submit: Callable[[Callable[[Any], Any], Any], None]
    call_later: Callable[[float, Callable[[], None]], TimerHandle]
    checkpointer: Checkpointer | None
    on_finished: Callable[[JobRun], None]
    save_deferred: SaveDeferred | None = None
    #: ``submit`` for what the current task runs next on its own thread (see WorkerPool).
    submit_next: Callable[[Callable[[Any], Any], Any], None] | None = None


class JobRun:
    """Executes one job of a compiled flow on the runtime's threads."""

    def __init__(self, plan: FlowPlan, job_state: JobState, services: RunServices) -> None:
        self.plan = plan
        self.job_state = job_state
        self._services = services
        self._lock = RLock()
        self._queues: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self._views: dict[str, dict[str, SlotView]] = {}
        for rid, routine_plan in plan.routines.items():
            views = {}
            for name in routine_plan.slot_names:
                queue: deque[dict[str, Any]] = deque()
                self._queues[(rid, name)] = queue
                views[name] = SlotView(name, queue)
            self._views[rid] = views
        self._inflight: dict[int, Activation] = {}
        self._timers: dict[int, TimerEntry] = {}
        self._rechecks: dict[str, int] = {}
        self._skipped: set[str] = set()
        self._policy_state: dict[str, dict[str, Any]] = {}
        self._timings: dict[str, PolicyTiming] = {}
        self._ids = itertools.count(1)
        self._finished = False
        self._announced = False
        self._critical: ErrorInfo | None = None
        # True while a commit (the tail of a worker task) schedules what it activated.
        self._chaining = False
        self._warned: set[tuple[str, str]] = set()

    # -- starting ----------------------------------------------------------------------
    def start(self, routine_id: str, slot: str, params: dict[str, Any]) -> None:
        """Deliver the entry data point and schedule whatever it activates."""
        with self._lock:
            self.job_state._transition(ExecutionStatus.RUNNING)
            self._queues[(routine_id, slot)].append(params)
            self._activate(routine_id)
            self._after_change()

    def resume(self) -> None:
        """Continue from the pending work stored in the JobState (see docs/architecture.md)."""
        pending = restore_pending(self.plan, self.job_state._pending or {})
        with self._lock:
            if self.job_state.status is ExecutionStatus.PENDING:
                self.job_state._transition(ExecutionStatus.RUNNING)
            for (rid, slot), items in pending.slots.items():
                self._queues[(rid, slot)].extend(items)
            self._skipped.update(pending.skipped)
            self._policy_state.update(pending.policy_state)
            for act in pending.activations:
                self._schedule(act.renumbered(next(self._ids)))
            for entry in pending.timers:
                self._arm(entry.renumbered(next(self._ids)))
            for rid in {rid for rid, _ in pending.slots}:
                self._activate(rid)
            self._after_change()

    # -- running one activation (worker thread) ----------------------------------------
    def run_activation(self, act: Activation) -> None:
        """Run ``act``'s logic with no lock held, then commit it."""
        if self._finished or act.routine_id in self._skipped:
            self._drop(act)
            return
        routine_plan = self.plan.routines[act.routine_id]
        ctx = ActivationContext(self, act.routine_id, routine_plan.routine)
        token = current_activation.set(ctx)
        started = time.time()
        error: BaseException | None = None
        try:
            if routine_plan.logic is not None:
                args = [list(act.data.get(name, ())) for name in routine_plan.slot_names]
                routine_plan.logic(*args, act.policy_message, self.job_state)
        except BaseException as exc:  # every failure goes through the error strategy
            error = exc
        finally:
            current_activation.reset(token)
        try:
            self._commit(act, ctx, error, started)
        finally:
            # The traceback refers to this frame, which refers to the error: a cycle that
            # would keep the failed activation's data alive until the cyclic GC runs.
            error = None

    def _drop(self, act: Activation) -> None:
        """Discard a queued activation of a finished job or a skipped routine."""
        with self._lock:
            self._inflight.pop(act.id, None)
            if self._finished:
                return
            now = time.time()
            record = {
                "routine_id": act.routine_id,
                "outcome": "discarded",
                "attempt": act.attempt,
                "started_at": now,
                "finished_at": now,
            }
            self.job_state._commit(None, record)
            self._after_change()

    def check_room(self, ctx: ActivationContext, event: str) -> None:
        """Called by ``Routine.emit``: raise if this emit would overflow a connected slot."""
        for target, slot_name, slot in self.plan.routes.get((ctx.routine_id, event), ()):
            key = (target, slot_name)
            wanted = ctx.emit_counts.get(key, 0) + 1
            if len(self._queues[key]) + wanted > slot.max_queue_length:
                raise SlotQueueFullError(
                    f"slot {target}.{slot_name} of job {self.job_state.job_id} is full "
                    f"({slot.max_queue_length} items); emit of {ctx.routine_id}.{event} refused"
                )
            ctx.emit_counts[key] = wanted

    def _commit(
        self, act: Activation, ctx: ActivationContext, error: BaseException | None, started: float
    ) -> None:
        with self._lock:
            self._inflight.pop(act.id, None)
            if self._finished:
                # The job ended while this ran: its terminal state is recorded already.
                self.job_state._rollback(ctx)
                return
            if error is None:
                error = self._overflow(ctx)
            outcome, keep = ("ok", True) if error is None else self._on_error(act, error)
            touched: dict[str, None] = {}
            if keep and not isinstance(error, SlotQueueFullError):
                touched = self._deliver(ctx)
            record = {
                "routine_id": act.routine_id,
                "outcome": outcome,
                "attempt": act.attempt,
                "started_at": started,
                "finished_at": time.time(),
            }
            # State writes count even when the attempt failed (they happened, and a retry
            # may build on them); emits of a failed attempt are withheld above.
            self.job_state._commit(ctx, record)
            self._chaining = True
            try:
                for rid in touched:
                    self._activate(rid)
            finally:
                self._chaining = False
            self._after_change()

    def _overflow(self, ctx: ActivationContext) -> SlotQueueFullError | None:
        """Re-check room at commit time: other activations may have filled a slot since."""
        for (target, slot_name), wanted in ctx.emit_counts.items():
            if target in self._skipped:
                continue
            slot = self.plan.routines[target].slots[slot_name]
            if len(self._queues[(target, slot_name)]) + wanted > slot.max_queue_length:
                return SlotQueueFullError(
                    f"slot {target}.{slot_name} of job {self.job_state.job_id} is full "
                    f"({slot.max_queue_length} items); emits of {ctx.routine_id} refused"
                )
        return None

    def _deliver(self, ctx: ActivationContext) -> dict[str, None]:
        # Ordered (routes' order), so which branch a commit runs next is the same every run.
        touched: dict[str, None] = {}
        routes = self.plan.routes
        for event, params in ctx.emits:
            for index, (target, slot_name, slot) in enumerate(
                routes.get((ctx.routine_id, event), ())
            ):
                if target in self._skipped:
                    logger.info(
                        "job %s: data for skipped routine %s discarded",
                        self.job_state.job_id,
                        target,
                    )
                    continue
                queue = self._queues[(target, slot_name)]
                queue.append(params if index == 0 else dict(params))
                touched[target] = None
                if len(queue) >= slot.watermark_length:
                    self._warn_watermark(target, slot_name, len(queue))
        return touched

    def _warn_watermark(self, target: str, slot_name: str, length: int) -> None:
        if (target, slot_name) not in self._warned:
            self._warned.add((target, slot_name))
            logger.warning(
                "job %s: slot %s.%s holds %d items, above its watermark",
                self.job_state.job_id,
                target,
                slot_name,
                length,
            )

    # -- errors ------------------------------------------------------------------------
    def _on_error(self, act: Activation, exc: BaseException) -> tuple[str, bool]:
        """Apply the routine's error strategy; returns (history outcome, keep its output)."""
        handler = self.plan.routines[act.routine_id].error_handler
        decision = decide(handler, act.attempt, exc)
        info = ErrorInfo.from_exception(exc, act.routine_id, act.attempt)
        fatal = decision.action is Action.FAIL
        self.job_state._record_error(info, fatal=fatal)
        logger.warning(
            "job %s: routine %s failed (attempt %d, %s): %s: %s",
            self.job_state.job_id,
            act.routine_id,
            act.attempt,
            decision.action.value,
            type(exc).__name__,
            exc,
        )
        if decision.action is Action.RETRY:
            retry = Activation(
                next(self._ids), act.routine_id, act.data, act.policy_message, act.attempt + 1
            )
            self._arm(
                TimerEntry(
                    next(self._ids), "retry", time.time() + decision.delay, act.routine_id, retry
                )
            )
            return "retry", False
        if fatal:
            self._terminate(ExecutionStatus.FAILED)
            return "error", False
        if handler.is_critical and self._critical is None:
            self._critical = info
        if decision.action is Action.SKIP:
            self._skip(act.routine_id)
            return "skipped", False
        return "error", True

    def _skip(self, routine_id: str) -> None:
        self._skipped.add(routine_id)
        for name in self.plan.routines[routine_id].slot_names:
            dropped = len(self._queues[(routine_id, name)])
            if dropped:
                logger.info(
                    "job %s: %d items for skipped routine %s.%s discarded",
                    self.job_state.job_id,
                    dropped,
                    routine_id,
                    name,
                )
            self._queues[(routine_id, name)].clear()

    # -- activation --------------------------------------------------------------------
    def _activate(self, routine_id: str) -> None:
        """Ask ``routine_id``'s policy, scheduling an activation each time it says yes."""
        if self._finished or routine_id in self._skipped:
            return
        routine_plan = self.plan.routines[routine_id]
        policy = routine_plan.policy
        views = self._views[routine_id]
        timing = self._timing(routine_id) if routine_plan.uses_clock else None
        while True:
            if timing is not None:
                timing.now = time.time()
            try:
                should, data, message = policy.check(views, self.job_state, timing)
            except Exception as exc:
                self._policy_failed(routine_id, exc)
                return
            if not should:
                return
            self._schedule(Activation(next(self._ids), routine_id, data, message, 0))
            # Ask again only while data waits (batch policies may fire repeatedly), and
            # never loop on a policy that fires with nothing.
            if not any(data.values()) or not any(views.values()):
                return

    def _timing(self, routine_id: str) -> PolicyTiming:
        timing = self._timings.get(routine_id)
        if timing is None:
            state = self._policy_state.setdefault(routine_id, {})
            timing = PolicyTiming(0.0, state, lambda due: self._arm_recheck(routine_id, due))
            self._timings[routine_id] = timing
        return timing

    def _policy_failed(self, routine_id: str, exc: Exception) -> None:
        error = ActivationPolicyError(
            f"activation policy of routine {routine_id!r} failed: {exc!r}"
        )
        error.__cause__ = exc
        self.job_state._record_error(ErrorInfo.from_exception(error, routine_id), fatal=True)
        self._terminate(ExecutionStatus.FAILED)

    def _schedule(self, act: Activation) -> None:
        self._inflight[act.id] = act
        if self._chaining and self._services.submit_next is not None:
            # The next step of a chain runs on this thread once the commit returns.
            self._services.submit_next(self.run_activation, act)
        else:
            self._services.submit(self.run_activation, act)

    # -- timers ------------------------------------------------------------------------
    def _arm_recheck(self, routine_id: str, due: float) -> None:
        current = self._rechecks.get(routine_id)
        if current is not None and self._timers[current].due <= due:
            return
        if current is not None:
            self._timers.pop(current).cancel()
        self._arm(TimerEntry(next(self._ids), "recheck", due, routine_id, None))

    def _arm(self, entry: TimerEntry) -> None:
        self._timers[entry.id] = entry
        if entry.kind == "recheck":
            self._rechecks[entry.routine_id] = entry.id
        delay = entry.due - time.time()
        entry.handle = self._services.call_later(
            delay, lambda: self._services.submit(self._fire_timer, entry.id)
        )

    def _fire_timer(self, timer_id: int) -> None:
        with self._lock:
            entry = self._timers.pop(timer_id, None)
            if entry is None or self._finished:
                return
            if entry.activation is not None:
                self._schedule(entry.activation)
            else:
                self._rechecks.pop(entry.routine_id, None)
                self._activate(entry.routine_id)
            self._after_change()

    # -- finishing ---------------------------------------------------------------------
    def cancel(self) -> bool:
        """Mark the job cancelled; running activations finish, nothing new starts."""
        with self._lock:
            if self._finished:
                return False
            self._terminate(ExecutionStatus.CANCELLED)
            self._after_change()
            return True

    def _after_change(self) -> None:
        """End of every locked change: finish if idle, checkpoint, announce a terminal state."""
        if not self._finished and not self._inflight and not self._timers:
            status = ExecutionStatus.FAILED if self._critical else ExecutionStatus.COMPLETED
            if self._critical is not None:
                self.job_state.error = self._critical
            self._terminate(status)
        self._checkpoint()
        if self._finished and not self._announced:
            self._announced = True
            self.job_state._run = None
            self._services.on_finished(self)

    def _terminate(self, status: ExecutionStatus) -> None:
        self._finished = True
        self._timings.clear()  # their recheck callbacks point back at this run
        for entry in self._timers.values():
            entry.cancel()
        self._log_leftovers()
        self.job_state._pending = self._pending()
        self.job_state._transition(status)

    def _log_leftovers(self) -> None:
        for (rid, slot), queue in self._queues.items():
            if queue:
                logger.info(
                    "job %s ended with %d item(s) left in slot %s.%s (kept in its state)",
                    self.job_state.job_id,
                    len(queue),
                    rid,
                    slot,
                )

    # -- snapshots ---------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A consistent ``JobState.to_dict()`` of this job, pending work included."""
        with self._lock:
            return self.job_state._snapshot(self._pending())

    def _checkpoint(self) -> None:
        checkpointer = self._services.checkpointer
        if checkpointer is None:
            return
        state = self.job_state
        state.checkpoint_seq += 1
        try:
            if self._services.save_deferred is not None:
                self._services.save_deferred(state, state.checkpoint_seq)
            else:
                checkpointer.save(state._snapshot(self._pending()))
        except Exception:
            logger.exception("checkpointer failed for job %s", self.job_state.job_id)

    def _pending(self) -> dict[str, Any]:
        slots: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for (rid, name), queue in self._queues.items():
            if queue:
                slots.setdefault(rid, {})[name] = list(queue)
        return {
            "slots": slots,
            "activations": [act.to_dict() for act in self._inflight.values()],
            "timers": [entry.to_dict() for entry in self._timers.values()],
            "skipped_routines": sorted(self._skipped),
            "policy_state": {rid: dict(s) for rid, s in self._policy_state.items() if s},
        }
