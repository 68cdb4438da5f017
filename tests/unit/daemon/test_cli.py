"""The routilux-daemon CLI through main(argv): check, flows, jobs, publish, dlq, logging."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from cli_support import REPO, run_cli, write_config

from daemon.cli import EXIT_CONFIG, EXIT_OK, EXIT_USAGE
from daemon.logging_setup import grouped_writes, setup_logging

# -- check / flows list -----------------------------------------------------------------


def test_check_on_the_example_config_prints_flows_bindings_and_redacted_config(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "check", "--config", "config/daemon.toml")
    assert code == EXIT_OK, err
    assert "orders_from_file" in out and "(file config/flows/orders_from_file.json)" in out
    assert "queue routilux.orders -> orders (entry validate.trigger)" in out
    assert "every 30s -> heartbeat (entry beat.trigger)" in out
    assert 'cron "*/5 * * * *" UTC -> heartbeat' in out
    assert "amqp://guest:***@127.0.0.1:5672/" in out and "guest:guest" not in out
    assert out.rstrip().endswith("OK")


def test_check_lists_every_problem_one_per_line_and_exits_1(
    in_repo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        """
        [flows]
        modules = ["examples.daemon_flows", "no_such_flows_module"]
        paths = ["missing_dir"]
        [[triggers]]
        type = "amqp"
        flow = "orderz"
        queue = "q"
        [[triggers]]
        type = "amqp"
        flow = "orders"
        queue = "q2"
        entry = "validate.nope"
        """,
    )
    code, out, err = run_cli(capsys, "--config", str(config), "check")
    assert code == EXIT_CONFIG
    lines = err.strip().splitlines()
    assert len(lines) == 5 and lines[-1] == "4 problem(s) found"
    assert "no_such_flows_module" in lines[0]
    assert "missing_dir" in lines[1]
    assert "unknown flow 'orderz'" in lines[2]
    assert "triggers[1] (amqp:q2)" in lines[3] and "nope" in lines[3]
    assert "Traceback" not in err and out == ""


def test_check_reports_every_config_key_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[runtime]\nthreads = 0\n[metrics]\nprot = 1\n[amqp]\nack = "later"\n')
    code, _, err = run_cli(capsys, "check", "--config", str(config))
    assert code == EXIT_CONFIG
    assert "runtime.threads:" in err and "metrics.prot: unknown key" in err
    assert "amqp.ack:" in err and "3 problem(s) found" in err


def test_global_options_work_before_and_after_the_command(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_cli(capsys, "--config", "config/daemon.toml", "flows", "list")
    after = run_cli(capsys, "flows", "list", "--config", "config/daemon.toml")
    assert before[0] == after[0] == EXIT_OK
    assert before[1] == after[1]


def test_flows_list_shows_each_flow_with_its_triggers(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "flows", "list", "--config", "config/daemon.toml")
    assert code == EXIT_OK
    blocks = out.split("\n")
    assert blocks[blocks.index("heartbeat") + 1].strip().startswith("interval:heartbeat")
    assert blocks[blocks.index("orders") + 1].strip().startswith("amqp:routilux.orders")
    assert blocks[blocks.index("orders_from_file") + 1].strip() == "(no triggers)"


def test_missing_config_file_is_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "jobs", "list", "--config", str(tmp_path / "none.toml"))
    assert code == EXIT_CONFIG and out == ""
    assert err.strip().splitlines() == [
        f"routilux-daemon: error: config file not found: {tmp_path / 'none.toml'}"
    ]


def test_debug_adds_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--debug", "jobs", "list", "--config", str(tmp_path / "x"))
    assert code == EXIT_CONFIG and "Traceback" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "frobnicate")[0] == EXIT_USAGE
    assert run_cli(capsys, "jobs", "list", "--status", "sleeping")[0] == EXIT_USAGE


def test_run_with_a_bad_config_exits_1_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[store]\nsynchronous = 'off'\n")
    code, _, err = run_cli(capsys, "run", "--config", str(config))
    assert code == EXIT_CONFIG and "store.synchronous" in err


def test_python_dash_m_daemon_is_the_same_cli(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[runtime]\nthreads = -1\nbogus = 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == EXIT_CONFIG
    assert "runtime.threads" in result.stderr and "runtime.bogus: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


# -- jobs list / show -------------------------------------------------------------------


def make_store(path: Path) -> None:
    """A jobs table exactly as DESIGN.md §4 describes it, with three jobs."""
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA journal_mode = WAL")
    running_state = {
        "status": "running",
        "started_at": "2026-11-26T01:00:00.500000+00:00",
        "routine_states": {"validate": {"seen": 1}},
        "pending": {
            "slots": {"store": {"input": [{"order": {}}, {"order": {}}]}},
            "activations": [{"routine_id": "enrich", "data": {}, "attempt": 1}],
            "timers": [{"kind": "retry", "due": 1764118923.5, "activation": {"routine_id": "x"}}],
        },
    }
    failed_state = {"status": "failed", "error": {"type": "ValueError", "traceback": "TB\nline"}}
    rows: list[dict[str, Any]] = [
        job("j1", "orders", "completed", "2026-11-26T01:00:00+00:00", state={"status": "x"}),
        job("j2", "orders", "running", "2026-11-26T01:00:01+00:00", state=running_state),
        job("j3", "heartbeat", "failed", "2026-11-26T01:00:02+00:00", state=failed_state),
    ]
    db["jobs"].insert_all(rows, pk="job_id")


def job(job_id: str, flow: str, status: str, created: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "flow_id": flow,
        "status": status,
        "trigger": f"amqp:{flow}",
        "dedupe_key": f"msg-{job_id}",
        "created_at": created,
        "updated_at": created,
        "completed_at": created if status != "running" else None,
        "error": "ValueError: bad order" if status == "failed" else None,
        "state": json.dumps(state),
    }


@pytest.fixture
def store_config(tmp_path: Path) -> Path:
    config = write_config(tmp_path, "")
    make_store(tmp_path / "jobs.db")
    return config


def test_jobs_list_prints_newest_first_and_filters(
    store_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "jobs", "list", "--config", str(store_config))
    assert code == EXIT_OK
    lines = out.strip().splitlines()
    assert lines[0].split() == [
        "JOB_ID",
        "FLOW",
        "STATUS",
        "TRIGGER",
        "CREATED_AT",
        "UPDATED_AT",
        "ERROR",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["j3", "j2", "j1"]
    assert "ValueError: bad order" in lines[1]
    code, out, _ = run_cli(
        capsys, "jobs", "list", "--status", "completed", "--flow", "orders", "--json",
        "--config", str(store_config),
    )  # fmt: skip
    assert [row["job_id"] for row in json.loads(out)] == ["j1"]
    assert "state" not in json.loads(out)[0]


def test_jobs_show_prints_state_and_pending_work(
    store_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "jobs", "show", "j2", "--config", str(store_config))
    assert code == EXIT_OK
    assert "status:        running" in out
    assert "started_at:    2026-11-26T01:00:00.500000+00:00" in out
    assert 'validate: {"seen": 1}' in out
    assert "slot store.input: 2 item(s)" in out
    assert "activation enrich (attempt 1)" in out
    assert "timer retry for x due 2025-11-26" in out
    code, out, _ = run_cli(capsys, "jobs", "show", "j3", "--config", str(store_config))
    assert "error:         ValueError: bad order" in out and "  TB\n  line" in out


def test_jobs_show_json_and_unknown_job(
    store_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "jobs", "show", "j1", "--json", "--config", str(store_config))
    assert code == EXIT_OK and json.loads(out)["dedupe_key"] == "msg-j1"
    code, _, err = run_cli(capsys, "jobs", "show", "nope", "--config", str(store_config))
    assert code == EXIT_CONFIG and "no job 'nope'" in err


def test_jobs_on_a_missing_or_foreign_store_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "")
    code, _, err = run_cli(capsys, "jobs", "list", "--config", str(config))
    assert code == EXIT_CONFIG and "does not exist" in err and len(err.splitlines()) == 1
    sqlite_utils.Database(tmp_path / "jobs.db")["other"].insert({"a": 1})
    code, _, err = run_cli(capsys, "jobs", "list", "--config", str(config))
    assert code == EXIT_CONFIG and "no jobs table" in err


# -- logging ----------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_the_traceback_inside() -> None:
    stream = io.StringIO()
    handler = setup_logging("json", logging.INFO, stream)
    try:
        log = logging.getLogger("daemon.test")
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            log.exception("job %s failed", "j1", extra={"job_id": "j1"})
    finally:
        logging.getLogger().removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "job j1 failed" and record["level"] == "ERROR"
    assert record["job_id"] == "j1" and "ValueError: bad" in record["exc"]


def test_text_logs_escape_newlines_so_one_record_is_one_line() -> None:
    stream = io.StringIO()
    handler = setup_logging("text", logging.INFO, stream)
    try:
        logging.getLogger("daemon.test").warning("two\nlines")
        logging.getLogger("daemon.test").debug("hidden at INFO")
    finally:
        logging.getLogger().removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING daemon.test: two\\nlines")


def test_grouped_log_records_are_written_together_and_only_this_threads() -> None:
    stream = io.StringIO()
    handler = setup_logging("text", logging.INFO, stream)
    log = logging.getLogger("daemon.test")
    try:
        with grouped_writes():
            log.info("first")
            log.debug("hidden at INFO")
            other = threading.Thread(target=lambda: log.info("other thread"))
            other.start()
            other.join()
            assert stream.getvalue().endswith("daemon.test: other thread\n")
            log.info("second")
            assert "first" not in stream.getvalue()
        lines = stream.getvalue().splitlines()
    finally:
        logging.getLogger().removeHandler(handler)
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["other thread", "first", "second"]
    assert all(" INFO daemon.test: " in line for line in lines)


def test_a_grouped_write_that_fails_is_reported_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler = setup_logging("text", logging.INFO, Broken())
    try:
        with grouped_writes():
            logging.getLogger("daemon.test").info("lost line")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "OSError: disk full" in capsys.readouterr().err


# -- run (real subprocess, systemd notify protocol) -------------------------------------


def test_run_notifies_ready_serves_probes_and_drains_on_sigterm(tmp_path: Path) -> None:
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(30)
    config = write_config(
        tmp_path,
        """
        [metrics]
        port = 0
        [flows]
        modules = ["examples.daemon_flows"]
        [[triggers]]
        type = "interval"
        flow = "heartbeat"
        seconds = 3600
        """,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": notify_path}
    command = [
        sys.executable,
        "-m",
        "daemon",
        "--log-format",
        "json",
        "run",
        "--config",
        str(config),
    ]
    process = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        with listener:
            assert listener.recv(4096).startswith(b"READY=1")
            port = _served_port(process)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                assert response.status == 200
            process.send_signal(signal.SIGTERM)
            assert listener.recv(4096).startswith(b"STOPPING=1")
        assert process.wait(timeout=60) == EXIT_OK
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def _served_port(process: subprocess.Popen[str]) -> int:
    """The HTTP port, read from the daemon's JSON log line (one JSON object per line)."""
    assert process.stderr is not None
    for line in process.stderr:
        record = json.loads(line)
        if record["message"].startswith("serving /metrics"):
            return int(record["message"].rsplit(":", 1)[1])
    raise AssertionError("the daemon exited before serving HTTP")


def test_check_reports_a_store_path_that_cannot_be_created(
    in_repo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    config = tmp_path / "store.toml"
    config.write_text(f'[store]\npath = "{blocker}/sub/jobs.db"\n')
    code, _, err = run_cli(capsys, "check", "--config", str(config))
    assert code == EXIT_CONFIG and f"store.path: {blocker}/sub/jobs.db" in err


def test_a_closed_pipe_ends_output_quietly(tmp_path: Path) -> None:
    """`routilux-daemon flows list | head -0` exits 0 without an error message."""
    import subprocess
    import sys

    config = Path(__file__).resolve().parents[3] / "config" / "daemon.toml"
    reader = subprocess.Popen(["head", "-c", "0"], stdin=subprocess.PIPE)
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "flows", "list", "--config", str(config)],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    assert "BrokenPipe" not in done.stderr
