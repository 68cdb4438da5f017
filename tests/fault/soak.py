"""Run the long variants of the fault suite and print their figures.

Usage (from the repo root)::

    .venv/bin/python tests/fault/soak.py [--soak-seconds N] [--report PATH] [-- PYTEST ARGS]

It runs ``pytest tests/fault -m soak`` on a RabbitMQ node of the suite's own
(``FAULT_PRIVATE_BROKER=1``: other test runs cannot disturb the measurement),
collects each scenario's ``FAULT ...`` result line in ``--report`` (default
``var/fault-report.txt``) and prints them. Exit status: pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-seconds", type=int, default=1800, help="length of scenario 8")
    parser.add_argument("--report", type=Path, default=REPO / "var" / "fault-report.txt")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("")
    env = dict(
        os.environ,
        FAULT_PRIVATE_BROKER="1",
        FAULT_REPORT=str(args.report),
        FAULT_SOAK_SECONDS=str(args.soak_seconds),
    )
    command = [sys.executable, "-m", "pytest", "tests/fault", "-m", "soak", "-q", "-s", "-rsx"]
    code = subprocess.run([*command, *args.pytest_args], cwd=REPO, env=env, check=False)
    print(f"\n--- figures ({args.report}) ---")
    print(args.report.read_text(), end="")
    return code.returncode


if __name__ == "__main__":
    sys.exit(main())
