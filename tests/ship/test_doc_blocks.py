"""Every code block marked ``<!-- runnable -->`` in README.md and docs/ runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- runnable -->\s*\n```python\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        for index, code in enumerate(MARKED.findall(doc.read_text(encoding="utf-8"))):
            found.append((f"{doc.relative_to(ROOT)}#{index}", code))
    return found


BLOCKS = _blocks()


def test_docs_have_runnable_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_marked_block_runs(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{where}:\n{done.stderr[-3000:]}"
