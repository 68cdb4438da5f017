"""``routilux-daemon flows graph NAME [--format mermaid|dot]`` through main(argv)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_support import REPO, run_cli

from daemon.cli import EXIT_CONFIG, EXIT_OK, EXIT_USAGE
from routilux import FlowRegistry


def test_graph_prints_mermaid_by_default_with_every_routine_and_connection(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "flows", "graph", "orders", "--config", "config/daemon.toml")
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    for routine in ("r_validate", "r_enrich", "r_store"):
        assert any(line.strip().startswith(f"{routine}[") for line in lines), out
    assert "r_validate -->" in out and "| r_enrich" in out
    assert "r_enrich -->" in out and "| r_store" in out
    assert "▶ entry" in out


def test_graph_prints_the_same_flow_as_graphviz_dot(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "--config", "config/daemon.toml", "flows", "graph", "orders", "--format", "dot"
    )
    assert code == EXIT_OK, err
    assert out.startswith('digraph "orders" {')
    assert "r_validate -> r_enrich" in out and "r_enrich -> r_store" in out
    assert out.rstrip().endswith("}")


def test_graph_equals_the_engine_rendering_of_the_registered_flow(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "flows", "graph", "heartbeat", "--config", "config/daemon.toml")
    assert code == EXIT_OK
    flow = FlowRegistry.get_instance().get_by_name("heartbeat")
    assert out == flow.to_mermaid() + "\n"


def test_graph_works_for_a_flow_loaded_from_a_file(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "flows", "graph", "orders_from_file", "--config", "config/daemon.toml"
    )
    assert code == EXIT_OK, err
    assert out.startswith("flowchart LR")


def test_graph_of_an_unknown_flow_exits_1_naming_the_known_flows(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "flows", "graph", "nope", "--config", "config/daemon.toml")
    assert code == EXIT_CONFIG
    assert out == ""
    assert err.count("\n") == 1, err
    assert "unknown flow 'nope'" in err and "orders" in err and "heartbeat" in err


def test_graph_exits_1_listing_flow_load_problems(
    in_repo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [store]
            path = "{tmp_path / "jobs.db"}"
            [flows]
            modules = ["no_such_flows_module_for_graph"]
            """
        )
    )
    code, _, err = run_cli(capsys, "flows", "graph", "orders", "--config", str(config))
    assert code == EXIT_CONFIG
    assert "no_such_flows_module_for_graph" in err
    assert "Traceback" not in err


def test_graph_rejects_an_unknown_format_as_a_usage_error(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "flows", "graph", "orders", "--format", "png", "--config", "config/daemon.toml"
    )
    assert code == EXIT_USAGE
    assert "invalid choice: 'png'" in err


def test_graph_runs_as_a_console_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "flows", "graph", "orders", "--format", "dot"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.startswith('digraph "orders" {')
