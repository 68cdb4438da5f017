"""Activation policies never lose or duplicate items.

Feeders emit ``count[k]`` items into slot ``s<k>`` of one sink, one item per
activation so arrivals interleave. With ``batch_size_policy(n)`` (and
``all_slots_ready_policy()``, which is the same rule with n = 1) the sink must run
exactly ``min(count[k] // n)`` times, each time on the n oldest items of every slot;
every item that formed a full batch is delivered exactly once, and the rest stays, in
order, in the job state's pending slots. ``time_interval_policy`` delays items but
delivers every one of them exactly once and leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from prop_flows import INTERVAL, JOB_TIMEOUT, running
from prop_routines import build_policy_flow

from routilux.activation_policies import (
    all_slots_ready_policy,
    batch_size_policy,
    time_interval_policy,
)
from routilux.status import ExecutionStatus


def policy_for(kind: str, n: int) -> Any:
    return all_slots_ready_policy() if kind == "all_slots_ready" else batch_size_policy(n)


def run_policy_job(counts: list[int], policy: Any) -> dict[str, Any]:
    with running({"policy": build_policy_flow(counts, policy)}) as runtime:
        job = runtime.exec("policy")
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)
    assert job.status is ExecutionStatus.COMPLETED, job.error
    return job.to_dict()


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["batch_size", "all_slots_ready"]),
    n=st.integers(1, 5),
    counts=st.lists(st.integers(0, 20), min_size=1, max_size=3),
)
def test_policy_delivers_full_batches_once_and_keeps_the_rest(
    kind: str, n: int, counts: list[int]
) -> None:
    n = 1 if kind == "all_slots_ready" else n
    snapshot = run_policy_job(counts, policy_for(kind, n))
    activations = [entry["got"] for entry in snapshot["shared_log"]]
    batches = min(count // n for count in counts)
    assert len(activations) == batches
    leftovers = snapshot["pending"]["slots"].get("sink", {})
    for k, count in enumerate(counts):
        slot = f"s{k}"
        delivered = sorted(i for got in activations for i in got[slot])
        assert delivered == list(range(batches * n)), f"{slot}: lost or duplicated items"
        for got in activations:
            # Each activation takes the n oldest items: a run of n consecutive indices.
            first = got[slot][0]
            assert got[slot] == list(range(first, first + n)) and first % n == 0
        kept = [item["value"][1] for item in leftovers.get(slot, [])]
        assert kept == list(range(batches * n, count)), f"{slot}: remainder not kept"


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(0, 15), min_size=1, max_size=3))
def test_time_interval_policy_delays_items_but_delivers_each_once(counts: list[int]) -> None:
    snapshot = run_policy_job(counts, time_interval_policy(INTERVAL))

    activations = [entry["got"] for entry in snapshot["shared_log"]]
    for k, count in enumerate(counts):
        delivered = [i for got in activations for i in got[f"s{k}"]]
        assert sorted(delivered) == list(range(count)), f"s{k}: lost or duplicated items"
    assert snapshot["pending"]["slots"] == {}, "time_interval_policy left items behind"
    if activations:
        event(f"items per activation > 1: {len(activations) < sum(counts)}")
