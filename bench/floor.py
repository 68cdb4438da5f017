"""The floor: the runtime benchmark's workloads on a bare ``ThreadPoolExecutor``.

No engine at all: each step is a plain function that records its item and submits
the next step. Whatever an engine adds (routing, policies, job state) costs time on
top of this, so these figures bound what any engine on this machine can reach.

Run as a driver: ``python bench/floor.py --plan '{"w1": {"jobs": 2000, "threads": 8}}'``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Latch, Ledger, Result, Stopwatch, driver_main, median, median_result

#: The four routines of the W1/W3 chain, in order.
CHAIN = ("a", "b", "c", "d")
#: How long any single wait may take before the run is declared failed.
WAIT_TIMEOUT = 120.0


def _step(pool: ThreadPoolExecutor, ledger: Ledger, latch: Latch, job: int, index: int) -> None:
    """Run chain step ``index`` of ``job``, then submit the next one (or finish)."""
    ledger.record(CHAIN[index], job, job)
    if index + 1 < len(CHAIN):
        pool.submit(_step, pool, ledger, latch, job, index + 1)
    else:
        latch.count_down()


def _run_chains(pool: ThreadPoolExecutor, jobs: int) -> Result:
    """Start ``jobs`` chains at once and wait until all finished."""
    ledger, latch = Ledger(), Latch(jobs)
    with Stopwatch() as watch:
        for job in range(jobs):
            pool.submit(_step, pool, ledger, latch, job, 0)
        finished = latch.wait(WAIT_TIMEOUT)
    problems = [] if finished else ["timed out"]
    problems += ledger.problems({j: j for j in range(jobs)}, CHAIN[-1])
    return {"ok": not problems, "problems": problems, **watch.rates(jobs)}


def w1(jobs: int, threads: int, warmup: int = 200) -> Result:
    """W1: ``jobs`` concurrent 4-step chains on ``threads`` threads; jobs/s."""
    with ThreadPoolExecutor(threads) as pool:
        _run_chains(pool, warmup)
        return _run_chains(pool, jobs)


class _Batcher:
    """Collects items under a lock and hands out full batches of ``size``."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._buffer: list[int] = []
        self._lock = threading.Lock()

    def add(self, item: int) -> list[int] | None:
        """Add ``item``; return a full batch when one is ready, else None."""
        with self._lock:
            self._buffer.append(item)
            if len(self._buffer) < self._size:
                return None
            batch, self._buffer = self._buffer, []
            return batch


def w2(items: int, batch: int, threads: int, repeat: int = 5) -> Result:
    """W2: one job fans ``items`` out to a worker, then into a batch-of-``batch`` sink.

    One warm-up job, then the median of ``repeat`` jobs (one job is only milliseconds).
    """
    with ThreadPoolExecutor(threads) as pool:
        _fan_out(pool, items, batch)
        return median_result([_fan_out(pool, items, batch) for _ in range(repeat)])


def _fan_out(pool: ThreadPoolExecutor, items: int, batch: int) -> Result:
    """Run one W2 job on ``pool`` and check it."""
    ledger, latch, batcher = Ledger(), Latch(items), _Batcher(batch)
    sizes: list[int] = []

    def sink(chunk: list[int]) -> None:
        sizes.append(len(chunk))
        for item in chunk:
            ledger.record("sink", 0, item)
        latch.count_down(len(chunk))

    def worker(item: int) -> None:
        ledger.record("worker", 0, item)
        chunk = batcher.add(item)
        if chunk is not None:
            pool.submit(sink, chunk)

    def source() -> None:
        for item in range(items):
            pool.submit(worker, item)

    with Stopwatch() as watch:
        pool.submit(source)
        finished = latch.wait(WAIT_TIMEOUT)
    problems = ([] if finished else ["timed out"]) + ledger.problems(
        dict.fromkeys(range(items), 0), "sink"
    )
    if any(size != batch for size in sizes):
        problems.append(f"sink batches of sizes {sorted(set(sizes))}, expected {batch}")
    return {"ok": not problems, "problems": problems, **watch.rates(items)}


def w3(samples: int, threads: int, warmup: int = 5) -> Result:
    """W3: one chain at a time; median seconds from submit to the waiter waking."""
    latencies: list[float] = []
    problems: list[str] = []
    with ThreadPoolExecutor(threads) as pool:
        for i in range(warmup + samples):
            ledger, latch = Ledger(), Latch(1)
            start = time.perf_counter()
            pool.submit(_step, pool, ledger, latch, i, 0)
            if not latch.wait(WAIT_TIMEOUT):
                problems.append("timed out")
                break
            if i >= warmup:
                latencies.append(time.perf_counter() - start)
            problems += ledger.problems({i: i}, CHAIN[-1])
    return {"ok": not problems, "problems": problems, "seconds": median(latencies)}


WORKLOADS: dict[str, Callable[..., Result]] = {"w1": w1, "w2": w2, "w3": w3}

if __name__ == "__main__":
    driver_main(WORKLOADS)
