"""docs/reference/ is generated from the code, committed up to date, and covers the contract.

The contract lists below are DESIGN.md §4 word for word: a metric or config key the
design promises must appear in the generated pages, so renaming one in the code
without the docs (or the docs without the code) fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "docs" / "gen_reference.py"
REFERENCE = ROOT / "docs" / "reference"
PAGES = ("config.md", "metrics.md", "cli.md")

#: DESIGN.md §4 "Metrics", as Prometheus exposes them (counters _total, histograms _bucket).
CONTRACT_SERIES = (
    "routilux_jobs_started_total",
    "routilux_jobs_finished_total",
    "routilux_job_duration_seconds_bucket",
    "routilux_jobs_running",
    "routilux_activations_total",
    "routilux_activation_duration_seconds_bucket",
    "routilux_messages_total",
    "routilux_trigger_fires_total",
    "routilux_jobs_resumed_total",
    "routilux_checkpoint_seconds_bucket",
    "routilux_amqp_connected",
    "routilux_build_info",
)
#: DESIGN.md §4 metric labels, by metric family.
CONTRACT_LABELS = {
    "routilux_jobs_started": ("flow",),
    "routilux_jobs_finished": ("flow", "status"),
    "routilux_job_duration_seconds": ("flow",),
    "routilux_jobs_running": ("flow",),
    "routilux_activations": ("flow", "outcome", "routine"),
    "routilux_activation_duration_seconds": ("flow", "routine"),
    "routilux_messages": ("outcome", "queue"),
    "routilux_trigger_fires": ("flow", "trigger"),
    "routilux_jobs_resumed": ("flow",),
    "routilux_build_info": ("version",),
}
#: DESIGN.md §4 "Config": section -> keys.
CONTRACT_SECTIONS = {
    "runtime": ("threads", "shutdown_timeout"),
    "store": ("path", "synchronous", "retention_days"),
    "amqp": ("url", "prefetch", "dead_letter_exchange", "ack"),
    "metrics": ("host", "port"),
    "flows": ("modules", "paths"),
}
#: DESIGN.md §4 "Config": trigger type -> keys.
CONTRACT_TRIGGERS = {
    "amqp": ("flow", "queue", "entry"),
    "interval": ("flow", "seconds", "params"),
    "cron": ("flow", "cron", "timezone", "params"),
}
#: DESIGN.md §4 "CLI" (plus the commands added since), as ``prog`` headings.
CONTRACT_COMMANDS = ("run", "check", "jobs list", "jobs show", "publish", "dlq replay")


def generate(*args: str, cwd: Path = ROOT, columns: str = "80") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": columns}
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def page(name: str) -> str:
    return (REFERENCE / name).read_text(encoding="utf-8")


def section_of(text: str, heading: str) -> str:
    """The body of the Markdown section starting at ``heading`` up to the next heading."""
    start = text.index(heading) + len(heading)
    following = [text.find(mark, start) for mark in ("\n## ", "\n### ")]
    ends = [i for i in following if i != -1]
    return text[start : min(ends) if ends else len(text)]


def table_row(text: str, first_cell: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"expected one row for {first_cell}, got {rows}"
    return rows[0]


def test_committed_reference_pages_are_up_to_date() -> None:
    done = generate("--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_generation_is_deterministic_whatever_the_terminal_width_and_cwd(tmp_path: Path) -> None:
    done = generate("--out", str(tmp_path), cwd=tmp_path, columns="37")
    assert done.returncode == 0, done.stderr
    for name in PAGES:
        assert (tmp_path / name).read_text(encoding="utf-8") == page(name), name


def test_check_mode_exits_1_naming_every_stale_page_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "metrics.md").write_text("outdated\n", encoding="utf-8")
    done = generate("--check", "--out", str(tmp_path))
    assert done.returncode == 1
    for name in PAGES:
        assert f"stale: {tmp_path / name}" in done.stdout
    assert (tmp_path / "metrics.md").read_text(encoding="utf-8") == "outdated\n"
    assert not (tmp_path / "config.md").exists()


@pytest.mark.parametrize("series", CONTRACT_SERIES)
def test_every_contract_metric_is_in_the_metrics_reference(series: str) -> None:
    assert f"`{series}`" in page("metrics.md")


@pytest.mark.parametrize(("family", "labels"), sorted(CONTRACT_LABELS.items()))
def test_metrics_reference_lists_the_contract_labels(family: str, labels: tuple[str]) -> None:
    row = table_row(page("metrics.md"), f"`{family}`")
    assert row.split(" | ")[3] == ", ".join(f"`{label}`" for label in labels)


def test_metrics_reference_gives_types_as_prometheus_does() -> None:
    text = page("metrics.md")
    assert " | counter | " in table_row(text, "`routilux_jobs_started`")
    assert " | histogram | " in table_row(text, "`routilux_checkpoint_seconds`")
    assert " | gauge | " in table_row(text, "`routilux_amqp_connected`")


@pytest.mark.parametrize(
    ("section", "key"), [(s, k) for s, keys in CONTRACT_SECTIONS.items() for k in keys]
)
def test_every_contract_config_key_is_documented_with_its_env_var(section: str, key: str) -> None:
    body = section_of(page("config.md"), f"## `[{section}]`")
    row = table_row(body, f"`{key}`")
    assert f"`ROUTILUX_{section.upper()}__{key.upper()}`" in row


@pytest.mark.parametrize(
    ("kind", "key"), [(t, k) for t, keys in CONTRACT_TRIGGERS.items() for k in keys]
)
def test_every_contract_trigger_key_is_documented(kind: str, key: str) -> None:
    body = section_of(page("config.md"), f'### `type = "{kind}"`')
    table_row(body, f"`{key}`")


def test_config_reference_shows_the_contract_defaults() -> None:
    text = page("config.md")
    assert '`"routilux.dlx"`' in table_row(
        section_of(text, "## `[amqp]`"), "`dead_letter_exchange`"
    )
    assert '`"on_checkpoint"`' in table_row(section_of(text, "## `[amqp]`"), "`ack`")
    assert "`9464`" in table_row(section_of(text, "## `[metrics]`"), "`port`")
    assert "`30`" in table_row(section_of(text, "## `[runtime]`"), "`shutdown_timeout`")


@pytest.mark.parametrize("command", [*CONTRACT_COMMANDS, "flows list", "flows graph"])
def test_cli_reference_has_the_help_of_every_command(command: str) -> None:
    text = page("cli.md")
    assert f"## `routilux-daemon {command}`" in text
    assert f"usage: routilux-daemon {command} [-h] [--config CONFIG]" in text
