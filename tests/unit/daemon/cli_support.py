"""Shared pieces of the CLI tests: where the repo is, a config writer, main() runner."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from daemon.cli import main

REPO = Path(__file__).resolve().parents[3]
AMQP_URL = os.environ.get("ROUTILUX_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def write_config(tmp_path: Path, body: str, amqp_url: str = AMQP_URL) -> Path:
    path = tmp_path / "daemon.toml"
    store = tmp_path / "jobs.db"
    head = f'[store]\npath = "{store}"\n[amqp]\nurl = "{amqp_url}"\n'
    path.write_text(head + textwrap.dedent(body))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
