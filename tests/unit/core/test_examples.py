"""Every engine example runs as a user would run it (``python examples/x.py``).

Each example asserts its own claims and exits non-zero if one fails; these tests run
them in a fresh interpreter and check the exit code and the lines that show the point
of the example.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

#: example file -> lines its output must contain.
EXPECTED_OUTPUT = {
    "basic_example.py": [
        "status=completed results=['Processed: HELLO']",
        "status=completed results=['Processed: ROUTILUX']",
        "basic example OK",
    ],
    "concurrent_flow_demo.py": [
        "user3: completed merged=['fetch_a(user3)', 'fetch_b(user3)', 'fetch_c(user3)']",
        "concurrent demo OK",
    ],
    "policies_example.py": [
        "batch_size(3), 7 items: [[0, 1, 2], [3, 4, 5]]",
        "left in the job's pending slots: [{'value': 6}]",
        "all_slots_ready, 3 left + 2 right: [([1], ['x']), ([2], ['y'])]",
        "custom (sum >= 10) on 4,3,5,1,9,2: [[4, 3, 5, 1, 9, 2]]",
        "policies example OK",
    ],
    "error_handling_example.py": [
        "stop: status=failed",
        "continue: status=completed stored=[1, 3]",
        "skip: status=completed stored=[1]",
        "check attempts: ['retry', 'retry', 'ok']",
        "retry_exhausted: status=failed",
        "error handling example OK",
    ],
    "save_resume_example.py": [
        "finished=['step1', 'step2'] in flight=['step3']",
        "step2 committed in the first process",
        "step3 committed in the new process",
        "save/resume example OK",
    ],
}


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / name)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_example_runs_and_prints_what_it_shows(name: str) -> None:
    result = run_example(name)

    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    for line in EXPECTED_OUTPUT[name]:
        assert line in result.stdout, f"{name}: {line!r} missing from:\n{result.stdout}"


def test_save_resume_example_reruns_only_the_in_flight_step() -> None:
    result = run_example("save_resume_example.py")

    assert result.returncode == 0, result.stderr
    started = [ln.split("] ")[1] for ln in result.stdout.splitlines() if ln.endswith(" started")]
    # step3 was in flight when the job was saved, so it started in both processes;
    # step1 and step2 had finished and never ran again.
    assert started == [
        "step1 started",
        "step2 started",
        "step3 started",
        "step3 started",
        "step4 started",
    ]
