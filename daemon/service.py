"""The daemon service: owns every component, starts them in dependency order and
stops them in reverse (DESIGN.md §4 "Signals", STYLE.md §6).

Start: flows -> store -> Runtime (checkpointing through the job tracker) ->
resume of unfinished jobs -> HTTP (metrics, health) -> timers -> the AMQP receiver
process with its consumers (in the background: an unreachable broker does not
stop the daemon; it keeps retrying while timers run) -> ``READY=1``.

Stop (first SIGTERM/SIGINT): stop intake (consumers cancelled, scheduler paused)
-> drain running jobs up to ``runtime.shutdown_timeout`` -> settle deliveries
(ack what is durable, nack+requeue the rest) -> AMQP closed -> timers stopped ->
Runtime shut down (unfinished jobs keep their last checkpoint and resume on the
next start) -> store closed (flushes) -> HTTP stopped -> exit 0. A fatal error
(flows or store cannot load, a queue declared with other arguments) exits 1.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from daemon.amqp import Intake, Publisher, QueueBinding, RemoteAmqp
from daemon.bridge import Bridge
from daemon.errors import BrokerUnavailable, DaemonError
from daemon.flow_loading import require_flows
from daemon.http_server import HealthServer, Readiness
from daemon.launcher import Launched, Launcher
from daemon.metrics import Metrics
from daemon.notify import Notifier
from daemon.runtime_hooks import JobTracker
from daemon.service_parts import (
    StoreLedger,
    StoreOutbox,
    open_store,
    queue_bindings,
    start_runtime,
    timer_specs,
    version,
)
from daemon.settings import Settings
from daemon.signals import SignalHandler
from daemon.timers import TimerSource, TimerSpec, run_id
from routilux.monitoring.flow_registry import FlowRegistry

logger = logging.getLogger(__name__)

#: Seconds a thread may hold the GIL before another waiting one takes over (CPython's
#: default is 0.005). The loop, the store's writer and the Runtime's threads all want
#: it; longer turns mean fewer forced hand-offs, and with the daemon bench's load this
#: gave 1-30% more messages/s (median ~10%, 6 paired runs) at the same p99 latency.
#: The event loop still gets the GIL within 20 ms, far inside any heartbeat.
GIL_SWITCH_INTERVAL = 0.02

#: The cyclic GC's thresholds once started (CPython's: 700, 10, 10). A young
#: collection runs each time new container objects outnumber freed ones by the first
#: figure, and under load the jobs in flight alone hold 10-20 thousand young objects:
#: at 700 the collector re-walked them every few messages (1,900 collections, 4% of
#: the CPU, for 30,000 messages of the daemon bench), stalling every thread each
#: time; at 20,000 it ran twice in 60,000 messages. Only cyclic garbage waits for
#: it, and jobs leave none (a failed activation's traceback cycle is broken in
#: ``JobRun``); what user code leaves waits for at most that many objects.
GC_THRESHOLDS = (20_000, 20, 20)

#: Exit code of a clean run, drained or not.
EXIT_OK = 0
#: Exit code when the daemon could not start or hit a fatal error.
EXIT_FATAL = 1
#: Seconds deliveries get to finish their acks after the drain before being nacked.
SETTLE_TIMEOUT = 5.0
#: Seconds the store gets to flush on close.
STORE_CLOSE_TIMEOUT = 30.0


def run(settings: Settings) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit code (used by ``routilux-daemon run``)."""
    return asyncio.run(Service(settings).run())


class Service:
    """Everything the daemon runs. One instance per process; methods run on its loop."""

    def __init__(self, settings: Settings, *, handle_signals: bool = True) -> None:
        self.settings = settings
        self.metrics = Metrics(version())
        self._handle_signals = handle_signals
        self._stop_requested = asyncio.Event()
        self._flows_loaded = False
        self._notifier = Notifier.from_env()
        self._bridge: Bridge | None = None
        self._tracker: JobTracker | None = None
        self._store: Any = None
        self._runtime: Any = None
        self._launcher: Launcher | None = None
        self._http: HealthServer | None = None
        self._timers: TimerSource | None = None
        self._intake: Intake | None = None
        self._consumer: RemoteAmqp | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._drained = True

    @property
    def http_port(self) -> int:
        """The port serving /metrics and the probes (after :meth:`start`)."""
        if self._http is None:
            raise RuntimeError("service not started")
        return self._http.port

    # ----------------------------------------------------------------- running
    async def run(self) -> int:
        """Start, wait for a stop signal or a fatal error, stop; the exit code."""
        loop = asyncio.get_running_loop()
        signals = SignalHandler(self.request_stop)
        if self._handle_signals:
            signals.install(loop)
        code = EXIT_OK
        try:
            await self.start()
            if self._handle_signals:  # the service owns the process
                sys.setswitchinterval(GIL_SWITCH_INTERVAL)
                # Modules, flows and connections made at startup live as long as the
                # process: moved out of the cyclic GC's sight, full collections no
                # longer walk them (each one stalls every thread while it runs).
                # Garbage left by startup (resumed jobs) is collected, not frozen.
                gc.collect()
                gc.freeze()
                gc.set_threshold(*GC_THRESHOLDS)
            code = await self._wait_for_stop()
        except DaemonError as exc:
            logger.error("daemon cannot run: %s", exc)
            code = EXIT_FATAL
        finally:
            await self.stop()
            if self._handle_signals:
                signals.uninstall(loop)
        return code

    def request_stop(self) -> None:
        """Ask :meth:`run` to drain and stop (idempotent; call on the loop)."""
        self._stop_requested.set()

    async def _wait_for_stop(self) -> int:
        stop = asyncio.ensure_future(self._stop_requested.wait())
        waiters: set[asyncio.Future[Any]] = {stop}
        fatal = self._consumer.fatal if self._consumer is not None else None
        if fatal is not None:
            waiters.add(fatal)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if fatal is not None and fatal.done():
            logger.error("fatal: %s", fatal.result())
            return EXIT_FATAL
        return EXIT_OK

    # ----------------------------------------------------------------- start
    async def start(self) -> None:
        """Start every component in dependency order.

        Raises:
            DaemonError: flows, store or HTTP server could not start.
        """
        bridge = self._bridge = Bridge(asyncio.get_running_loop())
        registry = FlowRegistry.get_instance()
        s = self.settings
        await bridge.run_blocking(require_flows, s.flows, s.triggers, registry)
        self._flows_loaded = True
        self.metrics.declare_flows(registry.list_names())
        self._store = await bridge.run_blocking(open_store, s.store)
        tracker = self._tracker = JobTracker(
            self._store, self.metrics, bridge, self._resumed_job_ended
        )
        self._runtime = start_runtime(s.runtime.threads, tracker)
        self._launcher = Launcher(
            self._store, self._runtime, tracker, bridge, self.metrics.checkpoint_observed
        )
        summary = await bridge.run_blocking(self._store.resume_all, self._runtime)
        _log_resume(summary)
        self._http = HealthServer(s.metrics.host, s.metrics.port, self._render, self.readiness)
        self._http.start()
        self._timers = TimerSource(
            timer_specs(s.triggers), StoreLedger(self._store), self._timer_launch
        )
        await self._timers.start()
        bindings = queue_bindings(s.triggers)
        if bindings:
            self._start_amqp(bindings, bridge, self._launcher)
        self._notifier.ready("routilux-daemon running")

    def _start_amqp(self, bindings: list[QueueBinding], bridge: Bridge, launcher: Launcher) -> None:
        a = self.settings.amqp
        publisher = Publisher(self._publish, a.dead_letter_exchange)
        self._intake = Intake(
            bindings=bindings,
            launcher=launcher,
            publisher=publisher,
            outbox=StoreOutbox(self._store),
            metrics=self.metrics,
            bridge=bridge,
            ack_mode=a.ack,
            capacity=max(a.prefetch, self.settings.runtime.threads * 2),
        )
        # The connection lives in a receiver process: reading AMQP frames then takes
        # the machine's other core instead of turns at this process's GIL.
        self._consumer = RemoteAmqp(
            a.url.get_secret_value(),
            bindings,
            a.dead_letter_exchange,
            a.prefetch,
            self._intake.on_message,
            self._amqp_state,
        )
        self._consumer.start()

    async def _publish(
        self, exchange: str, routing_key: str, body: bytes, properties: dict[str, Any]
    ) -> None:
        if self._consumer is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        await self._consumer.publish(exchange, routing_key, body, properties)

    def _amqp_state(self, connected: bool) -> None:
        """Connection up/down: the metric, and on (re)connect a flush of pending replies."""
        self.metrics.set_amqp_connected(connected)
        if connected and self._intake is not None:
            self._spawn(self._intake.flush_outbox())

    def _resumed_job_ended(self, job_id: str) -> None:
        """A job resumed from the store ended: its reply (if any) is only in the outbox."""
        if self._intake is not None:
            self._spawn(self._flush_when_durable(job_id))

    async def _flush_when_durable(self, job_id: str) -> None:
        # The outbox reads the job's row, so wait until its terminal snapshot is there.
        if self._launcher is None or self._intake is None or self._consumer is None:
            return
        if await self._launcher.durable(job_id) and self._consumer.consuming:
            await self._intake.flush_outbox()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _timer_launch(self, spec: TimerSpec, slot: datetime) -> Any:
        assert self._launcher is not None
        lag = max(0.0, (datetime.now(timezone.utc) - slot).total_seconds())
        launched: Launched = await self._launcher.launch(
            spec.flow, dict(spec.params), spec.trigger_id, run_id(spec.trigger_id, slot)
        )
        if launched.created:
            self.metrics.trigger_fired(spec.flow, spec.trigger_id, lag)
        return launched.ended

    def _render(self) -> bytes:
        """/metrics, with the oldest-unfinished-job gauge read from the store at scrape time.

        Called from the HTTP thread; the store's read path is thread-safe.
        """
        store = self._store
        if store is not None:
            try:
                self.metrics.set_oldest_pending_age(store.oldest_pending_age() or 0.0)
            except Exception as exc:  # a scrape must not fail because the store is busy
                logger.debug("oldest pending age unavailable: %s", exc)
        return self.metrics.render()

    # ----------------------------------------------------------------- readiness
    def readiness(self) -> Readiness:
        """Ready once flows are loaded, the store is open and healthy, every queue consumed.

        Called from the HTTP thread: reads only, never awaits.
        """
        if self._stop_requested.is_set():
            return Readiness(False, "stopping")
        if not self._flows_loaded:
            return Readiness(False, "flows not loaded")
        if self._store is None or self._runtime is None:
            return Readiness(False, "store not open")
        if not getattr(self._store, "healthy", True):
            return Readiness(False, f"store unhealthy: {getattr(self._store, 'last_error', '')}")
        if self._consumer is not None and not self._consumer.consuming:
            return Readiness(False, "amqp triggers not consuming (broker unreachable?)")
        return Readiness(True)

    # ----------------------------------------------------------------- stop
    async def stop(self) -> None:
        """Drain and stop everything started, in reverse order; never raises."""
        self._stop_requested.set()
        self._notifier.stopping("draining")
        for step in (self._stop_intake, self._drain, self._close):
            try:
                await step()
            except Exception:
                logger.exception("shutdown step %s failed", step.__name__)
        logger.info("daemon stopped")

    async def _stop_intake(self) -> None:
        if self._intake is not None:
            self._intake.stop()
        if self._consumer is not None:
            await self._consumer.cancel()
        if self._timers is not None:
            self._timers.pause()

    async def _drain(self) -> None:
        if self._runtime is None or self._bridge is None:
            return
        timeout = self.settings.runtime.shutdown_timeout
        done = await self._bridge.run_blocking(self._runtime.wait_until_all_jobs_finished, timeout)
        self._drained = done
        if not done:
            logger.warning("drain: jobs still running after %.1fs; they resume next start", timeout)
        if self._intake is not None:
            await self._intake.settle(SETTLE_TIMEOUT)

    async def _close(self) -> None:
        if self._consumer is not None:
            await self._consumer.close()
        for task in list(self._background):
            task.cancel()
        if self._timers is not None:
            self._timers.stop()
        if self._runtime is not None:
            # Past the grace period nothing more is waited for: running activations are
            # abandoned (daemon threads) and their jobs resume from the last checkpoint.
            await asyncio.to_thread(self._runtime.shutdown, self._drained, SETTLE_TIMEOUT)
        if self._tracker is not None:
            await asyncio.to_thread(self._tracker.close)
        if self._store is not None:
            await asyncio.to_thread(self._store.close, STORE_CLOSE_TIMEOUT)
        if self._http is not None:
            await asyncio.to_thread(self._http.stop)
        if self._bridge is not None:
            await asyncio.to_thread(self._bridge.close)


def _log_resume(summary: Any) -> None:
    resumed = list(getattr(summary, "resumed", []) or [])
    failed = dict(getattr(summary, "failed", {}) or {})
    if resumed or failed:
        logger.info("resumed %d unfinished job(s); %d could not resume", len(resumed), len(failed))
    for job_id, reason in failed.items():
        logger.warning("job %s not resumed: %s", job_id, reason)
