"""Small, generic helpers shared by every ``bench/*_bench.py``.

Standard library only: this module is also imported by ``upstream_adapter.py``,
which runs inside a throwaway venv that has nothing but ``routilux==1.1.0``.

What lives here:

* ``Stopwatch``: wall-clock, process CPU and cyclic-GC time of a block,
* ``Latch``: a countdown that a waiter blocks on (no sleep-polling),
* ``Ledger``: a record of which job handled which item, checked after a run,
* ``driver_main`` / ``run_driver``: run one implementation's workloads in a child
  process and read back its JSON result; ``median_result`` folds repetitions,
* ``series`` / ``passed`` / ``paired_ratio`` / ``problems_seen``: read a set of
  rounds (``Runs``) of several implementations,
* ``median`` / ``ratio`` / ``spread`` / ``fmt`` / ``markdown_table`` /
  ``machine_table``: reporting,
* ``ensure_venv``: the throwaway venv of a baseline (routilux 1.1.0, Dramatiq),
  made on first use so that ``make bench`` compares side by side on a new machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Workload parameters passed to a driver: workload name -> keyword arguments.
Plan = dict[str, dict[str, Any]]
#: One workload's result: at least ``ok`` (bool) and ``problems`` (list of str).
Result = dict[str, Any]
#: Raw results of a comparison: implementation -> one {workload: Result} per round,
#: rounds aligned by index across implementations.
Runs = dict[str, list[dict[str, Result]]]


class BenchError(Exception):
    """A benchmark could not be run (driver crashed, timed out, bad output)."""


class Stopwatch:
    """Wall-clock seconds, process CPU seconds (all threads) and seconds spent in the
    cyclic garbage collector, within a ``with`` block.

    CPU time is the steadier figure on a shared, noisy machine: waiting for a core
    inflates wall-clock time but not CPU time. GC time shows how much of the CPU
    goes to collecting objects the code under test allocated.
    """

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.gc = 0.0
        self._start = (0.0, 0.0)
        self._gc_started: dict[int, float] = {}

    def __enter__(self) -> Stopwatch:
        gc.callbacks.append(self._on_gc)
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self._start[0]
        self.cpu = time.process_time() - self._start[1]
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # A collection runs start to stop on one thread, holding the GIL, so that
        # thread's CPU time between the two is the collection's cost (wall-clock
        # time would also count the thread being preempted on a busy machine).
        if phase == "start":
            self._gc_started[threading.get_ident()] = time.thread_time()
        else:
            started = self._gc_started.pop(threading.get_ident(), None)
            if started is not None:
                self.gc += time.thread_time() - started

    def rates(self, units: int) -> dict[str, float]:
        """``seconds``, ``rate`` (units per wall second), ``cpu`` and ``gc`` (seconds
        per unit)."""
        return {
            "seconds": self.wall,
            "rate": units / self.wall,
            "cpu": self.cpu / units,
            "gc": self.gc / units,
        }


class Latch:
    """A countdown latch: ``wait`` blocks until ``count_down`` was called ``n`` times.

    Thread-safe. Used by drivers whose engine cannot report completion itself.
    """

    def __init__(self, count: int) -> None:
        self._count = count
        self._cond = threading.Condition()

    def count_down(self, n: int = 1) -> None:
        """Decrease the count by ``n``; wakes waiters when it reaches zero."""
        with self._cond:
            self._count -= n
            if self._count <= 0:
                self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the count is zero; return False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count <= 0, timeout)


class Ledger:
    """Which job each item was handled under, at each stage; checked after the run.

    ``record`` is safe from any thread (``list.append`` is atomic in CPython), and
    cheap, so every implementation pays the same small bookkeeping cost.
    """

    def __init__(self) -> None:
        self._records: list[tuple[str, Hashable, Hashable]] = []

    def record(self, stage: str, job: Hashable, tag: Hashable) -> None:
        """Note that ``stage`` handled the item tagged ``tag`` inside job ``job``."""
        self._records.append((stage, job, tag))

    def problems(self, owners: Mapping[Any, Hashable], final_stage: str) -> list[str]:
        """Check the run: each tag reached ``final_stage`` exactly once, never under a
        job other than ``owners[tag]``. Returns human-readable problems (empty = pass).
        """
        finals: Counter[Hashable] = Counter()
        foreign = 0
        for stage, job, tag in self._records:
            if owners.get(tag, _MISSING) != job:
                foreign += 1
            if stage == final_stage:
                finals[tag] += 1
        missing = sum(1 for tag in owners if finals[tag] == 0)
        duplicated = sum(1 for tag in owners if finals[tag] > 1)
        unknown = sum(1 for tag in finals if tag not in owners)
        found = [
            (missing, "items never reached the last routine"),
            (duplicated, "items reached the last routine more than once"),
            (unknown, "unknown items reached the last routine"),
            (foreign, "items handled under a foreign job"),
        ]
        return [f"{count} {what}" for count, what in found if count]


_MISSING = object()


def median(values: Iterable[float]) -> float:
    """Median of ``values``; NaN when there are none."""
    data = list(values)
    return statistics.median(data) if data else float("nan")


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when it cannot be computed."""
    if not denominator or denominator != denominator:
        return float("nan")
    return numerator / denominator


def median_result(results: Sequence[Result]) -> Result:
    """Combine repetitions of one workload: ``ok`` only if every one was, every
    distinct problem, and the median of each numeric field.
    """
    keys = {
        key
        for result in results
        for key, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    combined: Result = {key: median(r[key] for r in results if key in r) for key in keys}
    combined["ok"] = bool(results) and all(r.get("ok") for r in results)
    combined["problems"] = sorted({p for r in results for p in r.get("problems", [])})
    return combined


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median over rounds of ``numerators[i] / denominators[i]``.

    Pairing figures taken in the same round cancels most of a noisy machine's drift.
    """
    pairs = [ratio(n, d) for n, d in zip(numerators, denominators, strict=False)]
    return median(r for r in pairs if r == r)


def spread(values: Sequence[float], digits: int = 0) -> str:
    """``median [min-max]`` of the numbers in ``values`` (NaNs ignored)."""
    data = [v for v in values if v == v]
    if not data:
        return "n/a"
    return f"{fmt(median(data), digits)} [{fmt(min(data), digits)}-{fmt(max(data), digits)}]"


def fmt(value: float, digits: int = 0) -> str:
    """Format a number for a table, with thousands separators; ``n/a`` for NaN."""
    if value != value:
        return "n/a"
    return f"{value:,.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render a GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def series(runs: Runs, impl: str, workload: str, key: str, scale: float = 1.0) -> list[float]:
    """Per-round values of ``key`` (NaN for a round that failed to produce one)."""
    return [run.get(workload, {}).get(key, float("nan")) * scale for run in runs.get(impl, [])]


def passed(runs: Runs, impl: str, workload: str | None = None) -> bool:
    """Whether every round of ``impl`` (one workload, or all) passed its checks."""
    results = [r for run in runs.get(impl, []) for w, r in run.items() if workload in (None, w)]
    return bool(results) and all(r.get("ok") for r in results)


def problems_seen(runs: Runs, titles: dict[str, str]) -> str:
    """Markdown list of every distinct problem reported, or "" when there were none."""
    seen = {
        f"- {titles.get(impl, impl)} {workload.upper()}: {problem}"
        for impl, rounds in runs.items()
        for run in rounds
        for workload, result in run.items()
        for problem in result.get("problems", [])
    }
    return "Problems seen:\n\n" + "\n".join(sorted(seen)) if seen else ""


def ensure_venv(venv: Path, requirement: str, probe: str, expected: str) -> Path:
    """The python of ``venv``, creating it with ``pip install requirement`` if missing.

    ``probe`` is Python source run with ``python -I -c`` in the venv; the venv is
    (re)made unless it prints ``expected``. Blocks while pip runs (needs the package
    index). Raises BenchError naming the failed step.

        python = ensure_venv(Path("bench/.venvs/dramatiq"), "dramatiq[rabbitmq]",
                             "import dramatiq; print('ok')", "ok")
    """
    python = venv / "bin" / "python"
    # -I: neither the current directory (this repo's own routilux) nor PYTHON* env vars
    if python.exists():
        found = subprocess.run(
            [str(python), "-I", "-c", probe], capture_output=True, text=True, check=False
        )
        if found.stdout.strip() == expected:
            return python
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "-q", requirement],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(step[:5])} failed: {done.stderr.strip()[-300:]}")
    return python


def machine_info() -> dict[str, str]:
    """Facts about the machine that a figure depends on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "cpu": model,
        "os": f"{platform.system()} {platform.release()}",
    }


def machine_table() -> str:
    """``machine_info()`` as a two-column markdown table."""
    return markdown_table(["machine", "value"], machine_info().items())


def driver_main(workloads: dict[str, Callable[..., Result]]) -> None:
    """Entry point of a driver process: ``--plan JSON`` names workloads and their
    keyword arguments; each is run in order and one JSON object
    ``{workload: result}`` is printed as the last stdout line. A workload that
    raises is reported as ``ok: false`` with the error, so one crash does not hide
    the other figures.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan", required=True, help="JSON {workload: {kwarg: value}}")
    plan: Plan = json.loads(parser.parse_args().plan)
    out: dict[str, Result] = {}
    for name, kwargs in plan.items():
        try:
            out[name] = workloads[name](**kwargs)
        except Exception as exc:  # report, do not crash: see docstring
            out[name] = {"ok": False, "problems": [f"{type(exc).__name__}: {exc}"]}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def run_driver(cmd: Sequence[str], plan: Plan, timeout: float) -> dict[str, Result]:
    """Run a driver (``cmd`` + ``--plan``) in a child process and return its results.

    Blocks until the child exits. Raises BenchError if it fails, times out, or
    prints no JSON.
    """
    try:
        proc = subprocess.run(
            [*cmd, "--plan", json.dumps(plan)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{cmd[-1]} timed out after {timeout:.0f}s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise BenchError(f"{cmd[-1]} exited {proc.returncode}: {' / '.join(tail)}")
    try:
        return dict(json.loads(lines[-1]))
    except ValueError as exc:
        raise BenchError(f"{cmd[-1]} printed no JSON result: {lines[-1][:200]}") from exc
