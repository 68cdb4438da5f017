"""Tally: the daemon's cheap counters and histograms expose what prometheus-client would."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.metric_tally import Tally

BUCKETS = (0.005, 0.01, 0.1, 1, 10)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_histogram_and_counter_match_prometheus_client_sample_for_sample() -> None:
    # Values on the bounds, between them, at zero and past the last one.
    values = [0.0, 0.005, 0.0050001, 0.01, 0.05, 0.1, 1, 1.5, 10, 10.5, 1e6]
    theirs = CollectorRegistry()
    their_hist = Histogram("t_seconds", "Time.", ["flow"], buckets=BUCKETS, registry=theirs)
    their_count = Counter("t_runs", "Runs.", ["flow", "outcome"], registry=theirs)
    ours = CollectorRegistry()
    tally = Tally()
    our_hist = tally.histogram("t_seconds", "Time.", ["flow"], BUCKETS)
    our_count = tally.counter("t_runs", "Runs.", ["flow", "outcome"])
    ours.register(tally)
    for i, value in enumerate(values):
        flow = "a" if i % 2 else "b"
        their_hist.labels(flow).observe(value)
        their_count.labels(flow, "ok").inc()
        with tally.lock:
            our_hist.observe((flow,), value)
            our_count.add((flow, "ok"))
    assert samples(ours) == samples(theirs)
    text = generate_latest(ours).decode()
    assert 't_seconds_bucket{flow="a",le="1.0"}' in text  # prometheus' spelling of bounds
    assert 't_runs_created{flow="a",outcome="ok"}' in text
    assert 't_seconds_created{flow="b"}' in text


def test_unlabeled_series_are_exposed_at_zero_from_the_start() -> None:
    registry = CollectorRegistry()
    tally = Tally()
    tally.histogram("h_seconds", "H.", [], BUCKETS)
    tally.gauge("g", "G.", [])
    tally.counter("c", "C.", ["flow"])  # labelled: nothing until a label is used
    registry.register(tally)
    got = samples(registry)
    assert got[("h_seconds_count", ())] == 0 and got[("h_seconds_bucket", (("le", "+Inf"),))] == 0
    assert got[("g", ())] == 0
    assert not any(name.startswith("c_") for name, _ in got)


def test_updates_from_many_threads_are_all_counted() -> None:
    registry = CollectorRegistry()
    tally = Tally()
    runs = tally.counter("runs", "Runs.", ["flow"])
    took = tally.histogram("took_seconds", "Took.", ["flow"], BUCKETS)
    running = tally.gauge("running", "Running.", ["flow"])
    registry.register(tally)

    def work() -> None:
        for _ in range(5_000):
            with tally.lock:
                runs.add(("f",))
                took.observe(("f",), 0.02)
                running.add(("f",), 1.0)
            with tally.lock:
                running.add(("f",), -1.0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = samples(registry)
    assert got[("runs_total", (("flow", "f"),))] == 40_000
    assert got[("took_seconds_count", (("flow", "f"),))] == 40_000
    assert got[("took_seconds_bucket", (("flow", "f"), ("le", "0.1")))] == 40_000
    assert got[("took_seconds_bucket", (("flow", "f"), ("le", "0.01")))] == 0
    assert got[("running", (("flow", "f"),))] == 0


def test_wrong_label_count_is_refused_and_names_are_checked_at_register() -> None:
    tally = Tally()
    runs = tally.counter("runs", "Runs.", ["flow"])
    with pytest.raises(ValueError, match="runs: expected labels"):
        runs.add(("a", "b"))
    registry = CollectorRegistry()
    registry.register(tally)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("runs", "Again.", registry=registry)


def test_nan_and_disabled_created_series_behave_as_in_prometheus_client() -> None:
    from prometheus_client import disable_created_metrics, enable_created_metrics

    theirs = CollectorRegistry()
    their_hist = Histogram("n_seconds", "N.", buckets=BUCKETS, registry=theirs)
    ours = CollectorRegistry()
    tally = Tally()
    our_hist = tally.histogram("n_seconds", "N.", [], BUCKETS)
    ours.register(tally)
    for value in (0.5, float("nan"), 2.0):
        their_hist.observe(value)
        with tally.lock:
            our_hist.observe((), value)
    got, want = samples(ours), samples(theirs)
    assert got.keys() == want.keys()
    for key, value in want.items():  # NaN sums compare unequal to themselves
        assert (got[key] != got[key] and value != value) or got[key] == value, key
    disable_created_metrics()
    try:
        text = generate_latest(ours).decode()
        assert "_created" not in text and "n_seconds_count 2.0" in text
    finally:
        enable_created_metrics()
