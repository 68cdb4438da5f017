"""Metrics: exact names and labels of DESIGN.md §4, on a private registry."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from daemon.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the rendered text, keyed by name and sorted labels."""
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_contract_metric_is_exposed_with_its_exact_name() -> None:
    metrics = Metrics(version="9.9.9")
    metrics.job_started("orders")
    metrics.job_finished("orders", "completed", 0.2)
    metrics.activation("orders", "validate", "ok", 0.01)
    metrics.message("routilux.orders", "accepted")
    metrics.trigger_fired("heartbeat", "interval:heartbeat", lag=0.05)
    metrics.job_resumed("orders")
    metrics.checkpoint_observed(0.002)
    metrics.set_amqp_connected(True)
    metrics.dead_lettered("routilux.orders")
    metrics.set_oldest_pending_age(12.5)
    names = {name for name, _ in samples(metrics)}
    expected = {
        "routilux_jobs_started_total",
        "routilux_jobs_finished_total",
        "routilux_job_duration_seconds_bucket",
        "routilux_job_duration_seconds_count",
        "routilux_jobs_running",
        "routilux_activations_total",
        "routilux_activation_duration_seconds_bucket",
        "routilux_messages_total",
        "routilux_trigger_fires_total",
        "routilux_jobs_resumed_total",
        "routilux_checkpoint_seconds_bucket",
        "routilux_amqp_connected",
        "routilux_build_info",
        "routilux_oldest_pending_job_age_seconds",
        "routilux_dead_letters_total",
        "routilux_schedule_lag_seconds",
    }
    assert expected <= names


def test_labels_and_values_follow_the_calls() -> None:
    metrics = Metrics(version="2.0.0")
    metrics.job_started("orders")
    metrics.job_started("orders")
    metrics.job_finished("orders", "failed", 1.5)
    metrics.activation("orders", "enrich", "retry", 0.3)
    metrics.message("q", "duplicate")
    metrics.message("q", "duplicate")
    metrics.trigger_fired("hb", "cron:hb")
    got = samples(metrics)
    assert got[("routilux_jobs_started_total", (("flow", "orders"),))] == 2
    assert got[("routilux_jobs_running", (("flow", "orders"),))] == 1
    assert got[("routilux_jobs_finished_total", (("flow", "orders"), ("status", "failed")))] == 1
    assert got[("routilux_job_duration_seconds_sum", (("flow", "orders"),))] == 1.5
    key = (("flow", "orders"), ("outcome", "retry"), ("routine", "enrich"))
    assert got[("routilux_activations_total", key)] == 1
    assert got[("routilux_messages_total", (("outcome", "duplicate"), ("queue", "q")))] == 2
    assert got[("routilux_trigger_fires_total", (("flow", "hb"), ("trigger", "cron:hb")))] == 1
    assert got[("routilux_build_info", (("version", "2.0.0"),))] == 1
    assert got[("routilux_amqp_connected", ())] == 0


def test_job_resumed_counts_without_touching_jobs_running() -> None:
    metrics = Metrics(version="x")
    metrics.job_resumed("orders")
    got = samples(metrics)
    assert got[("routilux_jobs_resumed_total", (("flow", "orders"),))] == 1
    assert got.get(("routilux_jobs_running", (("flow", "orders"),)), 0) == 0


def test_declared_flows_show_zero_series_from_startup() -> None:
    metrics = Metrics(version="x")
    metrics.declare_flows(["orders", "heartbeat"])
    got = samples(metrics)
    assert got[("routilux_jobs_started_total", (("flow", "heartbeat"),))] == 0
    assert got[("routilux_jobs_running", (("flow", "orders"),))] == 0


def test_two_instances_do_not_share_or_touch_the_global_registry() -> None:
    first, second = Metrics(version="a"), Metrics(version="b")
    first.job_started("orders")
    assert ("routilux_jobs_started_total", (("flow", "orders"),)) not in samples(second)
    assert REGISTRY.get_sample_value("routilux_jobs_started_total", {"flow": "orders"}) is None
