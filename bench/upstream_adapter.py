"""The runtime benchmark's workloads on routilux 1.1.0 from PyPI (the baseline).

Runs only inside the throwaway venv ``bench/.venvs/routilux-1.1.0`` (made by
``runtime_bench.py``), where ``import routilux`` is the old package. 1.1.0 differs
from our engine in ways this adapter bridges:

* a flow runs as one long-lived *worker* (``Runtime.exec``) and each job is a
  ``Runtime.post`` into it; the job id is ``get_current_job().job_id``;
* a routine without an activation policy never runs, so the adapter supplies
  ``immediate`` and ``batch`` policies written against its ``Slot`` API;
* logic gets ``policy_message`` and ``worker_state`` as keywords, and ``emit`` needs
  the ``worker_state`` passed explicitly (downstream logic runs on the worker's
  event-loop thread, where no execution context is set);
* a job is never reported completed, so completion is detected here by counting
  executions of the last routine (a ``Latch``);
* ``Runtime(thread_pool_size=n)`` creates a pool it never uses: activations run on
  the global ``WorkerManager`` pool (100 threads by default). The adapter replaces
  that manager with one of ``threads`` threads so both engines get the same pool.

Run as a driver: ``python bench/upstream_adapter.py --plan '{"w1": {...}}'``.
"""

from __future__ import annotations

import itertools
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from routilux.core import (  # type: ignore[import-untyped]  # 1.1.0 has no py.typed
    Flow,
    FlowRegistry,
    Routine,
    Runtime,
    get_current_job,
)
from routilux.core import manager as worker_manager

sys.path.insert(0, str(Path(__file__).resolve().parent))


from common import Latch, Ledger, Result, Stopwatch, driver_main, median, median_result

#: The four routines of the W1/W3 chain, in order.
CHAIN = ("a", "b", "c", "d")
#: How long any single wait may take before the run is declared failed.
WAIT_TIMEOUT = 120.0
#: Slot capacity for every benchmark slot; W2 queues 1,000 items at once.
SLOT_CAPACITY = 5000

Policy = Callable[[dict[str, Any], Any], tuple[bool, dict[str, list[Any]], Any]]


def immediate_policy() -> Policy:
    """Any new data in any slot: take all of it (the seed's ``immediate_policy``)."""

    def policy(slots: dict[str, Any], worker_state: Any) -> tuple[bool, dict[str, list[Any]], Any]:
        taken = {name: slot.consume_all_new() for name, slot in slots.items()}
        return any(taken.values()), taken, None

    return policy


def batch_size_policy(size: int) -> Policy:
    """Every slot holds >= ``size`` new items: take ``size`` from each."""

    def policy(slots: dict[str, Any], worker_state: Any) -> tuple[bool, dict[str, list[Any]], Any]:
        if any(slot.get_unconsumed_count() < size for slot in slots.values()):
            return False, {}, None
        taken = {n: [s.consume_one_new() for _ in range(size)] for n, s in slots.items()}
        return True, taken, None

    return policy


class Probe:
    """What one measured run observes: a ledger and a latch on the last routine."""

    def __init__(self, expected: int) -> None:
        self.ledger = Ledger()
        self.latch = Latch(expected)
        self.batch_sizes: list[int] = []


class Step(Routine):  # type: ignore[misc]  # 1.1.0 ships no type information
    """One routine of a benchmark flow: record each item, pass it on (or finish)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", max_queue_length=SLOT_CAPACITY)
        self.define_event("output", ["tag"])
        self.set_activation_policy(immediate_policy())
        self.set_logic(self.logic)
        self.stage = ""
        self.last = False
        self.fan_out = 0
        self.probe = Probe(0)

    def logic(self, items: list[dict[str, Any]], policy_message: Any, worker_state: Any) -> None:
        """Record every item under the current job, then emit it on or count it done."""
        job = get_current_job()
        job_id = job.job_id if job is not None else None
        probe = self.probe
        if self.last:
            probe.batch_sizes.append(len(items))
        for item in items:
            if self.fan_out:  # the trigger is not an item: it starts the fan-out
                for tag in range(self.fan_out):
                    self.emit("output", worker_state=worker_state, tag=tag)
                continue
            probe.ledger.record(self.stage, job_id, item["tag"])
            if self.last:
                probe.latch.count_down()
            else:
                self.emit("output", worker_state=worker_state, tag=item["tag"])


def _use_pool(threads: int) -> None:
    """Size 1.1.0's global activation pool to ``threads`` (see module docstring)."""
    current = worker_manager.get_worker_manager()
    if current.max_workers != threads:
        worker_manager.reset_worker_manager()
        # 1.1.0 offers no public way to size the pool it really uses.
        worker_manager._global_worker_manager = worker_manager.WorkerManager(threads)


def _build(stages: dict[str, Step], policy_of: dict[str, Policy]) -> tuple[str, Flow]:
    """Wire ``stages`` in order into a uniquely named, registered flow."""
    name = f"bench-{uuid.uuid4().hex[:12]}"
    flow = Flow(name)
    for stage, step in stages.items():
        step.stage = stage
        if stage in policy_of:
            step.set_activation_policy(policy_of[stage])
        flow.add_routine(step, stage)
    ids = list(stages)
    for src, dst in itertools.pairwise(ids):
        flow.connect(src, "output", dst, "input")
    list(stages.values())[-1].last = True
    FlowRegistry.get_instance().register_by_name(name, flow)
    return name, flow


def _set_probe(stages: dict[str, Step], probe: Probe) -> None:
    for step in stages.values():
        step.probe = probe


def _run_chains(runtime: Runtime, name: str, stages: dict[str, Step], jobs: int) -> Result:
    """Post ``jobs`` chain jobs at once into one worker; wait for every last step."""
    probe = Probe(jobs)
    _set_probe(stages, probe)
    worker = runtime.exec(name)
    owners: dict[int, str] = {}
    with Stopwatch() as watch:
        for tag in range(jobs):
            _, job = runtime.post(name, CHAIN[0], "input", {"tag": tag}, worker_id=worker.worker_id)
            owners[tag] = job.job_id
        finished = probe.latch.wait(WAIT_TIMEOUT)
    problems = ([] if finished else ["timed out"]) + probe.ledger.problems(owners, CHAIN[-1])
    return {"ok": not problems, "problems": problems, **watch.rates(jobs)}


def w1(jobs: int, threads: int, warmup: int = 200) -> Result:
    """W1: ``jobs`` concurrent 4-routine chain jobs; jobs/s."""
    _use_pool(threads)
    stages = {stage: Step() for stage in CHAIN}
    name, _ = _build(stages, {})
    runtime = Runtime(thread_pool_size=threads)
    try:
        _run_chains(runtime, name, stages, warmup)
        return _run_chains(runtime, name, stages, jobs)
    finally:
        runtime.shutdown(wait=True)


def w2(items: int, batch: int, threads: int, repeat: int = 5) -> Result:
    """W2: one job fans ``items`` out to a worker and into a batch-of-``batch`` sink.

    One warm-up job, then the median of ``repeat`` jobs (one job is only milliseconds).
    """
    _use_pool(threads)
    stages = {"source": Step(), "worker": Step(), "sink": Step()}
    stages["source"].fan_out = items
    name, _ = _build(stages, {"sink": batch_size_policy(batch)})
    runtime = Runtime(thread_pool_size=threads)
    try:
        worker_id = runtime.exec(name).worker_id
        runs = [
            _fan_out(runtime, name, stages, worker_id, (items, batch)) for _ in range(1 + repeat)
        ]
    finally:
        runtime.shutdown(wait=True)
    return median_result(runs[1:])


def _fan_out(
    runtime: Runtime, name: str, stages: dict[str, Step], worker_id: str, size: tuple[int, int]
) -> Result:
    """Post one W2 job into the worker and check it; ``size`` is (items, batch)."""
    items, batch = size
    probe = Probe(items)
    _set_probe(stages, probe)
    with Stopwatch() as watch:
        _, job = runtime.post(name, "source", "input", {}, worker_id=worker_id)
        finished = probe.latch.wait(WAIT_TIMEOUT)
    owners = dict.fromkeys(range(items), job.job_id)
    problems = ([] if finished else ["timed out"]) + probe.ledger.problems(owners, "sink")
    sink_sizes = set(probe.batch_sizes)
    if sink_sizes != {batch}:
        problems.append(f"sink batches of sizes {sorted(sink_sizes)}, expected {batch}")
    return {"ok": not problems, "problems": problems, **watch.rates(items)}


def w3(samples: int, threads: int, warmup: int = 5) -> Result:
    """W3: one chain job at a time; median seconds from post() to the waiter waking."""
    _use_pool(threads)
    stages = {stage: Step() for stage in CHAIN}
    name, _ = _build(stages, {})
    runtime = Runtime(thread_pool_size=threads)
    latencies: list[float] = []
    problems: list[str] = []
    try:
        worker = runtime.exec(name)
        for tag in range(warmup + samples):
            probe = Probe(1)
            _set_probe(stages, probe)
            start = time.perf_counter()
            _, job = runtime.post(name, CHAIN[0], "input", {"tag": tag}, worker_id=worker.worker_id)
            if not probe.latch.wait(WAIT_TIMEOUT):
                problems.append("timed out")
                break
            if tag >= warmup:
                latencies.append(time.perf_counter() - start)
            problems += probe.ledger.problems({tag: job.job_id}, CHAIN[-1])
    finally:
        runtime.shutdown(wait=True)
    return {"ok": not problems, "problems": problems, "seconds": median(latencies)}


WORKLOADS: dict[str, Callable[..., Result]] = {"w1": w1, "w2": w2, "w3": w3}

if __name__ == "__main__":
    driver_main(WORKLOADS)
