"""Settings: the TOML file, env overrides, defaults, and one-line problems naming keys."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from daemon.errors import ConfigError
from daemon.settings import (
    AmqpTrigger,
    CronTrigger,
    IntervalTrigger,
    Settings,
    collect_config_problems,
    load_settings,
    redact_url,
)

REPO = Path(__file__).resolve().parents[3]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "daemon.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_match_the_design_contract() -> None:
    settings = Settings()
    assert settings.runtime.shutdown_timeout == 30
    assert settings.store.max_resumes == 5
    assert settings.amqp.dead_letter_exchange == "routilux.dlx"
    assert settings.amqp.ack == "on_checkpoint"
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9464)
    assert settings.triggers == []


def test_toml_file_with_every_section_and_trigger_type_loads(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [runtime]
        threads = 4
        shutdown_timeout = 5
        [store]
        path = "x/jobs.db"
        synchronous = "normal"
        retention_days = 3
        max_resumes = 2
        [amqp]
        url = "amqp://u:secret@mq:5672/vh"
        prefetch = 20
        ack = "on_complete"
        [metrics]
        port = 0
        [flows]
        modules = ["a.b"]
        paths = ["flows"]
        [[triggers]]
        type = "amqp"
        flow = "orders"
        queue = "q.orders"
        entry = "validate.trigger"
        [[triggers]]
        type = "interval"
        flow = "hb"
        seconds = 0.5
        params = { k = 1 }
        [[triggers]]
        type = "cron"
        flow = "hb"
        cron = "*/5 * * * *"
        timezone = "Europe/Paris"
        id = "hb-cron"
        catch_up = "all"
        max_instances = 2
        """,
    )
    settings = load_settings(path)
    assert settings.runtime.threads == 4
    assert settings.store.path == Path("x/jobs.db")
    assert settings.amqp.url.get_secret_value() == "amqp://u:secret@mq:5672/vh"
    amqp, interval, cron = settings.triggers
    assert isinstance(amqp, AmqpTrigger) and amqp.entry == "validate.trigger"
    assert isinstance(interval, IntervalTrigger) and interval.params == {"k": 1}
    assert interval.catch_up == "once" and interval.max_instances == 1
    assert isinstance(cron, CronTrigger) and cron.catch_up == "all"


def test_trigger_names_follow_the_jobs_trigger_column_rule() -> None:
    settings = Settings(
        triggers=[
            {"type": "amqp", "flow": "orders", "queue": "q1"},
            {"type": "interval", "flow": "hb", "seconds": 1},
            {"type": "cron", "flow": "hb", "cron": "0 * * * *"},
            {"type": "interval", "flow": "hb", "seconds": 2, "id": "fast"},
        ]
    )
    assert [t.name for t in settings.triggers] == ["amqp:q1", "interval:hb", "cron:hb", "fast"]


def test_every_problem_is_reported_once_naming_its_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        colour = "blue"
        [runtime]
        threads = "many"
        [store]
        synchronous = "sometimes"
        [amqp]
        ack = "never"
        prefetch = 0
        [metrics]
        port = 70000
        [[triggers]]
        type = "interval"
        flow = "hb"
        seconds = -1
        typo = 1
        [[triggers]]
        type = "cron"
        flow = "hb"
        cron = "not a cron"
        timezone = "Mars/Olympus"
        [[triggers]]
        type = "carrier-pigeon"
        flow = "hb"
        """,
    )
    settings, problems = collect_config_problems(path)
    assert settings is None
    keys = sorted(problem.split(":", 1)[0] for problem in problems)
    assert keys == sorted(
        [
            "colour",
            "runtime.threads",
            "store.synchronous",
            "amqp.ack",
            "amqp.prefetch",
            "metrics.port",
            "triggers[0].seconds",
            "triggers[0].typo",
            "triggers[1].cron",
            "triggers[1].timezone",
            "triggers[2]",
        ]
    )
    assert all("\n" not in problem for problem in problems)
    assert "unknown key" in next(p for p in problems if p.startswith("colour"))


def test_amqp_trigger_entry_must_be_routine_dot_slot() -> None:
    with pytest.raises(ValidationError, match="entry"):
        Settings(triggers=[{"type": "amqp", "flow": "f", "queue": "q", "entry": "justroutine"}])


def test_duplicate_trigger_names_are_rejected_with_a_hint() -> None:
    with pytest.raises(ValidationError, match=r"duplicate trigger name 'interval:hb'.*distinct id"):
        Settings(
            triggers=[
                {"type": "interval", "flow": "hb", "seconds": 1},
                {"type": "interval", "flow": "hb", "seconds": 2},
            ]
        )


def test_bad_amqp_url_never_echoes_the_password(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[amqp]\nurl = "http://user:hunter2@host/"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == ["amqp.url: must start with amqp:// or amqps://"]
    assert "hunter2" not in str(info.value)


def test_missing_explicit_file_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")
    broken = write_config(tmp_path, "[runtime\nthreads = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(broken)


def test_redacted_config_masks_only_the_password() -> None:
    settings = Settings(amqp={"url": "amqps://app:s3cret@mq.example:5671/prod"})
    assert settings.redacted()["amqp"]["url"] == "amqps://app:***@mq.example:5671/prod"
    assert "s3cret" not in repr(settings)
    assert redact_url("amqp://localhost/") == "amqp://localhost/"


def test_env_vars_override_the_file_with_section_double_underscore_key(tmp_path: Path) -> None:
    # Run in a child process: the tests never patch this process's environment.
    path = write_config(tmp_path, "[amqp]\nprefetch = 8\n[metrics]\nport = 9000\n")
    code = (
        "from pathlib import Path; from daemon.settings import load_settings; "
        f"s = load_settings(Path({str(path)!r})); "
        "print(s.amqp.prefetch, s.metrics.port, s.amqp.url.get_secret_value())"
    )
    env = {
        **os.environ,
        "ROUTILUX_AMQP__PREFETCH": "3",
        "ROUTILUX_AMQP__URL": "amqp://env:pw@h/",
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["3", "9000", "amqp://env:pw@h/"]


def test_example_config_is_valid() -> None:
    settings = load_settings(REPO / "config" / "daemon.toml")
    assert settings.flows.modules == ["examples.daemon_flows"]
    assert [t.type for t in settings.triggers] == ["amqp", "interval", "cron"]
    assert settings.metrics.port == 9464
