"""Engine runtime benchmark (issue #2): our engine vs routilux 1.1.0 vs a bare pool.

Workloads (same steps in every implementation, see ``floor.py`` and
``upstream_adapter.py`` for the other two):

* W1: 2,000 concurrent jobs of a 4-routine chain, ``thread_pool_size=8``; jobs/s.
* W2: one job fanning 1,000 items out to a worker and into a
  ``batch_size_policy(10)`` sink; items/s.
* W3: one chain job at a time, from ``exec()`` to status completed; median of 50.

Every implementation runs in its own child process, once per round, rounds in
rotating order; figures are medians over rounds. Each run also checks correctness
(every job's last routine ran exactly once, no item under a foreign job, sink
batches of exactly 10); a run that fails it is reported FAIL.

``python bench/runtime_bench.py`` prints a markdown report and exits 1 if our
engine failed to run or failed a correctness check. With ``--plan JSON`` this file
is instead the driver for our engine (what the report runs as a child).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


from common import (
    BenchError,
    Ledger,
    Result,
    Runs,
    Stopwatch,
    driver_main,
    ensure_venv,
    machine_table,
    markdown_table,
    median,
    median_result,
    paired_ratio,
    passed,
    problems_seen,
    run_driver,
    series,
    spread,
)

try:
    from routilux import Flow, Routine
    from routilux.activation_policies import batch_size_policy
    from routilux.monitoring.flow_registry import FlowRegistry
    from routilux.runtime import Runtime

    ENGINE_ERROR = ""
except ImportError as exc:  # the baselines are still measured; the report says why not
    ENGINE_ERROR = f"cannot import the engine: {exc}"
    Routine = object  # type: ignore[misc,assignment]

BENCH_DIR = Path(__file__).resolve().parent
#: The four routines of the W1/W3 chain, in order.
CHAIN = ("a", "b", "c", "d")
#: How long any single wait may take before the run is declared failed.
WAIT_TIMEOUT = 120.0
#: Slot capacity for every benchmark slot; W2 queues 1,000 items at once.
SLOT_CAPACITY = 5000
UPSTREAM_VERSION = "1.1.0"
UPSTREAM_VENV = BENCH_DIR / ".venvs" / f"routilux-{UPSTREAM_VERSION}"
VERSION_PROBE = "import importlib.metadata as m; print(m.version('routilux'))"


class Probe:
    """What one measured run observes (shared by the run's routines, not per job)."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.batch_sizes: list[int] = []


class Step(Routine):
    """One routine of a benchmark flow: record each item, pass it on.

    Configured after construction (``stage``, ``last``, ``fan_out``, ``probe``),
    before the flow is registered, because routines take no constructor arguments.
    """

    #: Name of the input slot; the entry routine's must be ``trigger``.
    SLOT = "input"

    def __init__(self) -> None:
        super().__init__()
        self.define_slot(self.SLOT, max_queue_length=SLOT_CAPACITY)
        self.define_event("output", ["tag"])
        self.set_logic(self.logic)
        self.stage = ""
        self.last = False
        self.fan_out = 0
        self.probe = Probe()

    def logic(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        """Record every item under this job, then emit it on (or ``fan_out`` new ones)."""
        ledger, job_id = self.probe.ledger, job_state.job_id
        if self.last:
            self.probe.batch_sizes.append(len(items))
        for item in items:
            if self.fan_out:  # the trigger is not an item: it starts the fan-out
                for tag in range(self.fan_out):
                    self.emit("output", tag=tag)
                continue
            ledger.record(self.stage, job_id, item["tag"])
            if not self.last:
                self.emit("output", tag=item["tag"])


class EntryStep(Step):
    """The first routine of a flow (found by its ``trigger`` slot)."""

    SLOT = "trigger"


def _build(stages: list[str], probe: Probe, fan_out: int = 0, batch: int = 0) -> str:
    """Build, wire and register a chain of ``stages``; return its registered name."""
    flow = Flow(f"bench-{uuid.uuid4().hex[:12]}")
    for index, stage in enumerate(stages):
        step = EntryStep() if index == 0 else Step()
        step.stage, step.probe = stage, probe
        step.last = index == len(stages) - 1
        step.fan_out = fan_out if index == 0 else 0
        if step.last and batch:
            step.set_activation_policy(batch_size_policy(batch))
        flow.add_routine(step, stage)
    for src, dst in itertools.pairwise(stages):
        flow.connect(src, "output", dst, Step.SLOT)
    FlowRegistry.get_instance().register_by_name(flow.flow_id, flow)
    return str(flow.flow_id)


def _run_chains(runtime: Runtime, jobs: int) -> Result:
    """Start ``jobs`` chain jobs at once; wait until the runtime says all finished."""
    probe = Probe()
    name = _build(list(CHAIN), probe)
    with Stopwatch() as watch:
        states = [runtime.exec(name, entry_params={"tag": tag}) for tag in range(jobs)]
        finished = runtime.wait_until_all_jobs_finished(timeout=WAIT_TIMEOUT)
    FlowRegistry.get_instance().unregister(name)
    problems = [] if finished else ["timed out"]
    problems += _status_problems(states)
    problems += probe.ledger.problems({t: s.job_id for t, s in enumerate(states)}, CHAIN[-1])
    return {"ok": not problems, "problems": problems, **watch.rates(jobs)}


def _status_problems(states: list[Any]) -> list[str]:
    """Problems if any job did not end ``completed``."""
    bad = [str(s.status) for s in states if s.status != "completed"]
    return [f"{len(bad)} jobs ended {sorted(set(bad))}, not completed"] if bad else []


def w1(jobs: int, threads: int, warmup: int = 200) -> Result:
    """W1: ``jobs`` concurrent 4-routine chain jobs; jobs/s."""
    with Runtime(thread_pool_size=threads) as runtime:
        _run_chains(runtime, warmup)
        return _run_chains(runtime, jobs)


def w2(items: int, batch: int, threads: int, repeat: int = 5) -> Result:
    """W2: one job fans ``items`` out to a worker and into a batch-of-``batch`` sink.

    One warm-up job, then the median of ``repeat`` jobs (one job is only milliseconds).
    """
    with Runtime(thread_pool_size=threads) as runtime:
        _fan_out(runtime, items, batch)
        return median_result([_fan_out(runtime, items, batch) for _ in range(repeat)])


def _fan_out(runtime: Runtime, items: int, batch: int) -> Result:
    """Run one W2 job and check it."""
    probe = Probe()
    name = _build(["source", "worker", "sink"], probe, fan_out=items, batch=batch)
    with Stopwatch() as watch:
        state = runtime.exec(name, entry_params={})
        finished = state.wait_for_completion(timeout=WAIT_TIMEOUT)
    FlowRegistry.get_instance().unregister(name)
    problems = ([] if finished else ["timed out"]) + _status_problems([state])
    problems += probe.ledger.problems(dict.fromkeys(range(items), state.job_id), "sink")
    if set(probe.batch_sizes) != {batch}:
        problems.append(f"sink batches of sizes {sorted(set(probe.batch_sizes))}, expected {batch}")
    return {"ok": not problems, "problems": problems, **watch.rates(items)}


def w3(samples: int, threads: int, warmup: int = 5) -> Result:
    """W3: one chain job at a time; median seconds from exec() to completed."""
    probe = Probe()
    name = _build(list(CHAIN), probe)
    latencies: list[float] = []
    states = []
    with Runtime(thread_pool_size=threads) as runtime:
        for tag in range(warmup + samples):
            start = time.perf_counter()
            state = runtime.exec(name, entry_params={"tag": tag})
            if not state.wait_for_completion(timeout=WAIT_TIMEOUT):
                break
            if tag >= warmup:
                latencies.append(time.perf_counter() - start)
            states.append(state)
    FlowRegistry.get_instance().unregister(name)
    problems = [] if len(states) == warmup + samples else ["timed out"]
    problems += _status_problems(states)
    problems += probe.ledger.problems({t: s.job_id for t, s in enumerate(states)}, CHAIN[-1])
    return {"ok": not problems, "problems": problems, "seconds": median(latencies)}


WORKLOADS: dict[str, Callable[..., Result]] = {"w1": w1, "w2": w2, "w3": w3}

# --- the report: runs the three drivers and compares them ------------------------

#: Implementations in report order: key -> column title.
IMPLS = {"ours": "ours", "upstream": f"routilux {UPSTREAM_VERSION}", "floor": "bare pool(8)"}


def ensure_upstream_venv() -> Path:
    """Create the throwaway venv with routilux==1.1.0 if missing; return its python.

    Blocks while pip runs (needs the package index). Raises BenchError on failure.
    """
    return ensure_venv(
        UPSTREAM_VENV, f"routilux=={UPSTREAM_VERSION}", VERSION_PROBE, UPSTREAM_VERSION
    )


def driver_commands(with_upstream: bool) -> dict[str, list[str] | BenchError]:
    """How to start each implementation's driver process, or why it cannot start."""
    commands: dict[str, list[str] | BenchError] = {
        "ours": [sys.executable, str(BENCH_DIR / "runtime_bench.py")],
        "floor": [sys.executable, str(BENCH_DIR / "floor.py")],
    }
    if with_upstream:
        try:
            python = ensure_upstream_venv()
            commands["upstream"] = [str(python), "-I", str(BENCH_DIR / "upstream_adapter.py")]
        except BenchError as exc:  # e.g. offline: the other columns are still worth having
            commands["upstream"] = exc
    return commands


def measure(args: argparse.Namespace) -> Runs:
    """Run every driver once per round, in rotating order; raw results per impl."""
    plan = {
        "w1": {"jobs": args.jobs, "threads": args.threads},
        "w2": {"items": args.items, "batch": args.batch, "threads": args.threads},
        "w3": {"samples": args.samples, "threads": args.threads},
    }
    commands = driver_commands(not args.no_upstream)
    runs: Runs = {impl: [] for impl in commands}
    order = list(commands)
    for round_no in range(args.runs):
        for impl in order[round_no % len(order) :] + order[: round_no % len(order)]:
            command = commands[impl]
            try:
                if isinstance(command, BenchError):
                    raise command
                runs[impl].append(run_driver(command, plan, timeout=600))
            except BenchError as exc:
                failed = {"ok": False, "problems": [str(exc)]}
                runs[impl].append({w: dict(failed) for w in plan})
    return runs


ROWS = [  # (workload, label, result key, scale, digits)
    ("w1", "W1 chain throughput (jobs/s, higher is better)", "rate", 1.0, 0),
    ("w1", "W1 CPU per job (us, lower is better)", "cpu", 1e6, 1),
    ("w1", "W1 of which cyclic GC (us per job)", "gc", 1e6, 1),
    ("w2", "W2 fan-out + batch(10) (items/s, higher is better)", "rate", 1.0, 0),
    ("w2", "W2 CPU per item (us, lower is better)", "cpu", 1e6, 2),
    ("w3", "W3 single-job latency (ms, lower is better)", "seconds", 1e3, 3),
]


def render(args: argparse.Namespace, runs: Runs) -> str:
    """The markdown report: machine, figures with ratios, targets, problems."""
    impls = [impl for impl in IMPLS if impl in runs]
    headers = ["workload", *(IMPLS[i] for i in impls), "ours / 1.1.0", "ours / floor"]
    rows = []
    for w, label, key, scale, digits in ROWS:
        cells = [
            spread(series(runs, i, w, key, scale), digits) + ("" if passed(runs, i, w) else " FAIL")
            for i in impls
        ]
        ours = series(runs, "ours", w, key)
        ratios = [
            _times(paired_ratio(ours, series(runs, i, w, key))) for i in ("upstream", "floor")
        ]
        rows.append([label, *cells, *ratios])
    parts = [
        "## Engine runtime (issue #2)",
        machine_table(),
        f"Medians of {args.runs} rounds, [min-max] in brackets; ratios are medians of "
        f"per-round ratios; thread pool of {args.threads}. W1: {args.jobs:,} concurrent jobs "
        f"of a 4-routine chain. W2: one job fanning {args.items:,} items out to a worker and "
        f"into a batch_size_policy({args.batch}) sink. W3: exec() to completed, median of "
        f"{args.samples} single jobs per round. CPU is process CPU time (all threads).",
        markdown_table(headers, rows),
        markdown_table(["target", "wall-clock", "by CPU time", "verdict"], _targets(runs)),
        problems_seen(runs, IMPLS),
        f"Command: `python bench/runtime_bench.py --runs {args.runs}`",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _times(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}x"


def _targets(runs: Runs) -> list[list[str]]:
    def vs(other: str, w: str, key: str) -> float:
        return paired_ratio(series(runs, "ours", w, key), series(runs, other, w, key))

    # CPU per job is inverse to throughput, so the CPU-based ratio is other / ours.
    up, up_cpu = vs("upstream", "w1", "rate"), 1 / vs("upstream", "w1", "cpu")
    floor, floor_cpu = vs("floor", "w1", "rate"), 1 / vs("floor", "w1", "cpu")
    latency = vs("floor", "w3", "seconds")
    rows = [
        ["W1 >= 3x routilux 1.1.0", _times(up), _times(up_cpu), _verdict(up >= 3)],
        [
            "W1 >= 1/3 of the bare pool (aim 1/2)",
            _times(floor),
            _times(floor_cpu),
            _verdict(floor >= 1 / 3),
        ],
        ["W3 within 5x of the bare chain", _times(latency), "", _verdict(latency <= 5)],
    ]
    for impl in (i for i in IMPLS if i in runs):
        rows.append(
            [f"checks: {IMPLS[impl]}", "every round", "", "PASS" if passed(runs, impl) else "FAIL"]
        )
    return rows


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (medians over these)")
    parser.add_argument("--jobs", type=int, default=2000, help="W1 concurrent jobs")
    parser.add_argument("--items", type=int, default=1000, help="W2 fan-out items")
    parser.add_argument("--batch", type=int, default=10, help="W2 sink batch size")
    parser.add_argument("--samples", type=int, default=50, help="W3 jobs per run")
    parser.add_argument("--threads", type=int, default=8, help="thread pool size")
    parser.add_argument("--no-upstream", action="store_true", help="skip routilux 1.1.0")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    return parser.parse_args()


def main() -> int:
    """Measure, print the markdown report; 1 if our engine failed to run or check."""
    args = parse_args()
    runs = measure(args)
    sys.stdout.write(render(args, runs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(runs, indent=1))
    return 0 if passed(runs, "ours") else 1


def engine_driver() -> None:
    """Driver mode (``--plan``): run the workloads on our engine, print JSON."""
    if ENGINE_ERROR:
        raise SystemExit(ENGINE_ERROR)
    driver_main(WORKLOADS)


if __name__ == "__main__":
    if "--plan" in sys.argv:
        engine_driver()
    else:
        sys.exit(main())
