"""The seed README's examples run unchanged."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT.parent / "shared" / "seed" / "routilux-README.md"


def _python_blocks() -> list[str]:
    if not SEED.exists():
        pytest.skip(f"seed README not found at {SEED}")
    return re.findall(r"```python\n(.*?)```", SEED.read_text(encoding="utf-8"), re.S)


def test_minimal_working_example_runs_unchanged_and_completes(tmp_path: Path) -> None:
    script = tmp_path / "mwe.py"
    script.write_text(_python_blocks()[0], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Status: completed"


def test_activation_policy_imports_from_the_readme_work() -> None:
    block = _python_blocks()[1]
    imports = block.split("# Set policy on routine")[0]
    namespace: dict[str, object] = {}
    exec(compile(imports, "readme-policies", "exec"), namespace)
    assert callable(namespace["time_interval_policy"])
