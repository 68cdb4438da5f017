"""Prometheus metrics of the daemon, on a private registry (DESIGN.md §4 "Metrics").

Every name and label set below is part of the external contract. The service calls
the small methods of :class:`Metrics`; nothing else touches the collectors. All
methods are thread-safe and never raise on a new label value.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from daemon.metric_tally import Tally

__all__ = ["CONTENT_TYPE", "Metrics"]

#: Content-Type of :meth:`Metrics.render` output (Prometheus text format).
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Buckets for job and activation durations: 5 ms .. 10 min.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
#: Buckets for one checkpoint write: 0.1 ms .. 1 s.
_CHECKPOINT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1)


class Metrics:
    """The daemon's metrics; one instance per service, each on its own registry.

    ``jobs_running{flow}`` goes up in :meth:`job_started` and down in
    :meth:`job_finished`, so each job_started needs exactly one job_finished. A resumed
    job is reported with :meth:`job_resumed` (counter only) *and* job_started.

    The series updated for every message and activation live in a
    :class:`~daemon.metric_tally.Tally` (one lock per call instead of one per value);
    the rarely updated ones are ordinary prometheus-client collectors.
    """

    def __init__(self, version: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._tally = Tally()
        self._build_job_metrics()
        self._build_intake_metrics()
        self.registry.register(self._tally)
        build_info = Gauge(
            "routilux_build_info",
            "Build information; always 1.",
            ["version"],
            registry=self.registry,
        )
        build_info.labels(version=version).set(1)

    def _build_job_metrics(self) -> None:
        t = self._tally
        self._jobs_started = t.counter("routilux_jobs_started", "Jobs started, by flow.", ["flow"])
        self._jobs_finished = t.counter(
            "routilux_jobs_finished", "Jobs at a terminal status.", ["flow", "status"]
        )
        self._job_duration = t.histogram(
            "routilux_job_duration_seconds",
            "Wall time from job start to its terminal status.",
            ["flow"],
            _DURATION_BUCKETS,
        )
        self._jobs_running = t.gauge("routilux_jobs_running", "Jobs in progress.", ["flow"])
        self._jobs_resumed = t.counter(
            "routilux_jobs_resumed", "Unfinished jobs resumed from a checkpoint.", ["flow"]
        )
        self._activations = t.counter(
            "routilux_activations",
            "Routine activations by outcome.",
            ["flow", "routine", "outcome"],
        )
        self._activation_duration = t.histogram(
            "routilux_activation_duration_seconds",
            "Duration of one routine activation.",
            ["flow", "routine"],
            _DURATION_BUCKETS,
        )
        self._checkpoint = t.histogram(
            "routilux_checkpoint_seconds",
            "Time to make one checkpoint durable.",
            [],
            _CHECKPOINT_BUCKETS,
        )
        self._oldest_pending = Gauge(
            "routilux_oldest_pending_job_age_seconds",
            "Age of the oldest unfinished job; 0 when there is none.",
            registry=self.registry,
        )

    def _build_intake_metrics(self) -> None:
        r = self.registry
        self._messages = self._tally.counter(
            "routilux_messages",
            "AMQP messages by outcome (accepted|duplicate|rejected).",
            ["queue", "outcome"],
        )
        self._dead_letters = Counter(
            "routilux_dead_letters",
            "Messages dead-lettered, by source queue.",
            ["queue"],
            registry=r,
        )
        self._trigger_fires = Counter(
            "routilux_trigger_fires", "Trigger firings.", ["flow", "trigger"], registry=r
        )
        self._schedule_lag = Gauge(
            "routilux_schedule_lag_seconds",
            "How late the last timer fire ran after its scheduled time.",
            ["trigger"],
            registry=r,
        )
        self._amqp_connected = Gauge(
            "routilux_amqp_connected", "1 while connected to RabbitMQ, else 0.", registry=r
        )

    def declare_flows(self, flows: Iterable[str]) -> None:
        """Create the per-flow series at 0 so dashboards see every flow from startup."""
        with self._tally.lock:
            for flow in flows:
                self._jobs_started.add((flow,), 0.0)
                self._jobs_running.add((flow,), 0.0)
                self._jobs_resumed.add((flow,), 0.0)

    def job_started(self, flow: str) -> None:
        """A new job of ``flow`` started (not a resume)."""
        labels = (flow,)
        with self._tally.lock:
            self._jobs_started.add(labels)
            self._jobs_running.add(labels, 1.0)

    def job_resumed(self, flow: str) -> None:
        """An unfinished job of ``flow`` was resumed from its checkpoint (counter only)."""
        with self._tally.lock:
            self._jobs_resumed.add((flow,))

    def job_finished(self, flow: str, status: str, duration: float) -> None:
        """A started or resumed job reached ``status`` after ``duration`` seconds."""
        with self._tally.lock:
            self._jobs_finished.add((flow, status))
            self._job_duration.observe((flow,), max(duration, 0.0))
            self._jobs_running.add((flow,), -1.0)

    def activation(self, flow: str, routine: str, outcome: str, duration: float) -> None:
        """One activation of ``routine`` ended with ``outcome`` (ok|error|retry|skipped|...)."""
        with self._tally.lock:
            self._activations.add((flow, routine, outcome))
            self._activation_duration.observe((flow, routine), max(duration, 0.0))

    def message(self, queue: str, outcome: str) -> None:
        """A message from ``queue`` was accepted, a duplicate, or rejected."""
        with self._tally.lock:
            self._messages.add((queue, outcome))

    def dead_lettered(self, queue: str) -> None:
        """A message from ``queue`` was sent to its dead-letter queue."""
        self._dead_letters.labels(queue=queue).inc()

    def trigger_fired(self, flow: str, trigger: str, lag: float | None = None) -> None:
        """``trigger`` started a job of ``flow``; ``lag``: seconds late (timers only)."""
        self._trigger_fires.labels(flow=flow, trigger=trigger).inc()
        if lag is not None:
            self._schedule_lag.labels(trigger=trigger).set(max(lag, 0.0))

    def checkpoint_observed(self, seconds: float) -> None:
        """One checkpoint took ``seconds`` to become durable."""
        with self._tally.lock:
            self._checkpoint.observe((), max(seconds, 0.0))

    def set_oldest_pending_age(self, seconds: float) -> None:
        """Age of the oldest pending/running job (0 when none)."""
        self._oldest_pending.set(max(seconds, 0.0))

    def set_amqp_connected(self, connected: bool) -> None:
        """Record whether the AMQP connection is up."""
        self._amqp_connected.set(1 if connected else 0)

    def render(self) -> bytes:
        """The current metrics in Prometheus text format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
