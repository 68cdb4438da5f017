"""What the daemon does to its own process once started (run in a child process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon.service import GC_THRESHOLDS, GIL_SWITCH_INTERVAL

CHILD = r"""
import asyncio, gc, json, sys
from pathlib import Path
from daemon.service import Service
from daemon.settings import load_settings

async def main():
    service = Service(load_settings(Path(sys.argv[1])))
    before = (sys.getswitchinterval(), gc.get_freeze_count(), gc.get_threshold())
    run = asyncio.ensure_future(service.run())
    for _ in range(1000):  # until started: the HTTP port is known then
        try:
            service.http_port
            break
        except RuntimeError:
            await asyncio.sleep(0.01)  # polling the service's start
    await asyncio.sleep(0)
    after = (sys.getswitchinterval(), gc.get_freeze_count(), gc.get_threshold())
    service.request_stop()
    code = await run
    print(json.dumps({"before": before, "after": after, "code": code}))

asyncio.run(main())
"""


def test_a_started_daemon_freezes_startup_objects_and_tunes_switch_interval_and_gc(
    tmp_path: Path,
) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "jobs.db"}"\n[metrics]\nport = 0\n'
        '[flows]\nmodules = ["examples.daemon_flows"]\n'
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(config)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["before"][0] == 0.005 and report["before"][1] == 0
    assert report["after"][0] == GIL_SWITCH_INTERVAL
    assert report["after"][1] > 10_000  # modules, flows, settings...
    assert report["before"][2] == [700, 10, 10]
    assert report["after"][2] == list(GC_THRESHOLDS)
    assert report["code"] == 0
