"""The shipped deployment files work: systemd unit, Dockerfile install steps, alerts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "routilux-daemon.service"
DOCKERFILE = ROOT / "Dockerfile"


def _unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), value.strip())
    return settings


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    daemon = Path(sys.executable).with_name("routilux-daemon")
    unit = tmp_path / "routilux-daemon.service"
    unit.write_text(UNIT.read_text().replace("/opt/routilux/bin/routilux-daemon", str(daemon)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "routilux-daemon.service" not in done.stderr, done.stderr


def test_systemd_unit_has_notify_restart_state_dir_and_hardening() -> None:
    s = _unit_settings()
    assert s["Type"] == "notify" and s["Restart"] == "on-failure"
    assert s["StateDirectory"] == "routilux" and s["DynamicUser"] == "yes"
    assert s["EnvironmentFile"] == "-/etc/routilux/env"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[key] == "yes", key
    assert s["ProtectSystem"] == "strict"
    # longer than the default drain timeout (30 s)
    assert int(s["TimeoutStopSec"]) > 30


def test_dockerfile_is_non_root_exec_form_with_healthcheck_and_volume() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER routilux$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["routilux-daemon"\]$', text, re.M)  # exec form: PID 1
    assert "STOPSIGNAL SIGTERM" in text and "EXPOSE 9464" in text
    assert "/healthz" in text and 'VOLUME ["/var/lib/routilux"]' in text
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / source.rstrip("/")).exists(), source


@pytest.mark.slow
def test_dockerfile_install_steps_in_a_fresh_venv_give_a_working_cli(tmp_path: Path) -> None:
    target = tmp_path / "opt-routilux"
    venv.EnvBuilder(with_pip=True).create(target)
    pip = target / "bin" / "pip"
    done = subprocess.run(
        [str(pip), "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    cli = subprocess.run(
        [str(target / "bin" / "routilux-daemon"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "run" in cli.stdout and "check" in cli.stdout
