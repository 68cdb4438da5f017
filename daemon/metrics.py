"""Prometheus metrics of the daemon, on a private registry (DESIGN.md §4 "Metrics").

Every name and label set below is part of the external contract. The service calls
the small methods of :class:`Metrics`; nothing else touches the collectors. All
methods are thread-safe (prometheus-client locks each child) and never raise on a
new label value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

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
    """

    def __init__(self, version: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._build_job_metrics()
        self._build_intake_metrics()
        build_info = Gauge(
            "routilux_build_info",
            "Build information; always 1.",
            ["version"],
            registry=self.registry,
        )
        build_info.labels(version=version).set(1)

    def _build_job_metrics(self) -> None:
        r = self.registry
        self._jobs_started = Counter(
            "routilux_jobs_started", "Jobs started, by flow.", ["flow"], registry=r
        )
        self._jobs_finished = Counter(
            "routilux_jobs_finished", "Jobs at a terminal status.", ["flow", "status"], registry=r
        )
        self._job_duration = Histogram(
            "routilux_job_duration_seconds",
            "Wall time from job start to its terminal status.",
            ["flow"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self._jobs_running = Gauge(
            "routilux_jobs_running", "Jobs in progress.", ["flow"], registry=r
        )
        self._jobs_resumed = Counter(
            "routilux_jobs_resumed",
            "Unfinished jobs resumed from a checkpoint.",
            ["flow"],
            registry=r,
        )
        self._activations = Counter(
            "routilux_activations",
            "Routine activations by outcome.",
            ["flow", "routine", "outcome"],
            registry=r,
        )
        self._activation_duration = Histogram(
            "routilux_activation_duration_seconds",
            "Duration of one routine activation.",
            ["flow", "routine"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self._checkpoint = Histogram(
            "routilux_checkpoint_seconds",
            "Time to make one checkpoint durable.",
            buckets=_CHECKPOINT_BUCKETS,
            registry=r,
        )
        self._oldest_pending = Gauge(
            "routilux_oldest_pending_job_age_seconds",
            "Age of the oldest unfinished job; 0 when there is none.",
            registry=r,
        )

    def _build_intake_metrics(self) -> None:
        r = self.registry
        self._messages = Counter(
            "routilux_messages",
            "AMQP messages by outcome (accepted|duplicate|rejected).",
            ["queue", "outcome"],
            registry=r,
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
        for flow in flows:
            self._jobs_started.labels(flow=flow)
            self._jobs_running.labels(flow=flow)
            self._jobs_resumed.labels(flow=flow)

    def job_started(self, flow: str) -> None:
        """A new job of ``flow`` started (not a resume)."""
        self._child(self._jobs_started, flow).inc()
        self._child(self._jobs_running, flow).inc()

    def job_resumed(self, flow: str) -> None:
        """An unfinished job of ``flow`` was resumed from its checkpoint (counter only)."""
        self._child(self._jobs_resumed, flow).inc()

    def job_finished(self, flow: str, status: str, duration: float) -> None:
        """A started or resumed job reached ``status`` after ``duration`` seconds."""
        self._child(self._jobs_finished, flow, status).inc()
        self._child(self._job_duration, flow).observe(max(duration, 0.0))
        self._child(self._jobs_running, flow).dec()

    def activation(self, flow: str, routine: str, outcome: str, duration: float) -> None:
        """One activation of ``routine`` ended with ``outcome`` (ok|error|retry|skipped|...)."""
        self._child(self._activations, flow, routine, outcome).inc()
        self._child(self._activation_duration, flow, routine).observe(max(duration, 0.0))

    def message(self, queue: str, outcome: str) -> None:
        """A message from ``queue`` was accepted, a duplicate, or rejected."""
        self._child(self._messages, queue, outcome).inc()

    def dead_lettered(self, queue: str) -> None:
        """A message from ``queue`` was sent to its dead-letter queue."""
        self._dead_letters.labels(queue=queue).inc()

    def trigger_fired(self, flow: str, trigger: str, lag: float | None = None) -> None:
        """``trigger`` started a job of ``flow``; ``lag``: seconds late (timers only)."""
        self._child(self._trigger_fires, flow, trigger).inc()
        if lag is not None:
            self._schedule_lag.labels(trigger=trigger).set(max(lag, 0.0))

    def checkpoint_observed(self, seconds: float) -> None:
        """One checkpoint took ``seconds`` to become durable."""
        self._checkpoint.observe(max(seconds, 0.0))

    def set_oldest_pending_age(self, seconds: float) -> None:
        """Age of the oldest pending/running job (0 when none)."""
        self._oldest_pending.set(max(seconds, 0.0))

    def set_amqp_connected(self, connected: bool) -> None:
        """Record whether the AMQP connection is up."""
        self._amqp_connected.set(1 if connected else 0)

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached: labels() locks and validates on every call,
        and the hot path asks for the same few children once per message and activation."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, metric.labels(*values))
        return child

    def render(self) -> bytes:
        """The current metrics in Prometheus text format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
