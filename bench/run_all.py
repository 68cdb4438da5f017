"""Run every ``bench/*_bench.py`` and collect their reports (what ``make bench`` runs).

Each bench runs as its own child process (``python bench/x_bench.py``) and prints a
markdown report on stdout; this script concatenates them, with a header, into
``bench/results/latest.md`` and echoes it. A bench that exits non-zero or times out
still has its output kept, followed by the tail of its stderr, and makes this script
exit 1 once all benches have run.

Usage: ``python bench/run_all.py [NAME ...]`` where NAME is e.g. ``runtime`` to run
only ``runtime_bench.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_table

BENCH_DIR = Path(__file__).resolve().parent
#: Where the collected report goes (gitignored).
RESULTS = BENCH_DIR / "results" / "latest.md"
#: Upper bound for one bench; the whole suite is meant to take minutes.
BENCH_TIMEOUT = 1800.0


def discover(names: list[str]) -> list[Path]:
    """The bench scripts to run, sorted; only ``names`` (without ``_bench.py``) if given."""
    found = sorted(BENCH_DIR.glob("*_bench.py"))
    if names:
        found = [path for path in found if path.name.removesuffix("_bench.py") in names]
    return found


def run_one(path: Path) -> tuple[bool, str]:
    """Run one bench; return (succeeded, its markdown section). Blocks until it ends."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(path)],
            capture_output=True,
            text=True,
            timeout=BENCH_TIMEOUT,
            check=False,
            cwd=BENCH_DIR.parent,
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return False, f"{partial}\n**{path.name}: timed out after {BENCH_TIMEOUT:.0f} s**\n"
    took = time.perf_counter() - start
    section = proc.stdout.rstrip() + "\n"
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.rstrip().splitlines()[-15:])
        section += f"\n**{path.name} exited {proc.returncode}**, stderr tail:\n\n```\n{tail}\n```\n"
    return proc.returncode == 0, section + f"\n_{path.name} took {took:.0f} s._\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benches, write ``RESULTS``, echo it; 1 if any bench failed or none ran."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="bench names, e.g. runtime (default: all)")
    args = parser.parse_args(argv)
    scripts = discover(args.names)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# Routilux benchmarks, {stamp}", machine_table()]
    failed = []
    for path in scripts:
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        ok, section = run_one(path)
        parts.append(section.strip())
        if not ok:
            failed.append(path.name)
    if not scripts:
        parts.append("No bench/*_bench.py matched.")
    if failed:
        parts.append(f"**Failed: {', '.join(failed)}**")
    report = "\n\n".join(parts) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    print(f"wrote {RESULTS.relative_to(BENCH_DIR.parent)}", file=sys.stderr)
    return 1 if failed or not scripts else 0


if __name__ == "__main__":
    sys.exit(main())
