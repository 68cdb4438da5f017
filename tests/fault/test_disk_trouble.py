"""Scenario 6: the store's filesystem fills up or turns read-only under load, then recovers.

The store lives on a small tmpfs mounted for the test (needs root and ``mount``;
skipped otherwise).

* Full: a filler file takes every free byte under a running daemon. While that
  lasts the daemon must stay alive, report ``/readyz`` 503, and ack nothing it
  could not make durable: a message published meanwhile leaves the broker only
  once its job is on record (jobs may still commit into WAL space that a checkpoint
  freed before the disk filled).
  Once space returns it must become ready again by itself and finish everything:
  each message exactly one completed job.
* Read-only: the kernel refuses ``mount -o remount,ro`` while the store has files
  open for writing (EBUSY), so a live daemon cannot be given a read-only disk here.
  Instead the daemon is stopped, the filesystem remounted read-only and the daemon
  started on it: it must exit 1 naming the store, leave every message on the
  broker, and finish everything once started again on a writable disk.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultbroker import Broker, bulk_publish, declare_queue, json_messages
from faultkit import FaultDaemon, report, wait_for, watch

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

#: Size of the tmpfs holding the store: room for the test's jobs, small enough to fill.
DISK_SIZE = "16m"
#: Padding per message body, so the trouble-time jobs need fresh pages.
PAD = "x" * 4000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs of DISK_SIZE at ``tmp_path/disk``; unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    yield mount_point
    # Lazy: a daemon still holding the file must not make the unmount fail.
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 16)
    with path.open("wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        for size in (4096, 512, 1):  # the last partial blocks too
            try:
                while True:
                    written += handle.write(b"\0" * size)
            except OSError:
                continue
    return written


def remount(mount_point: Path, mode: str) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,{mode}", str(mount_point)], check=True, capture_output=True
    )


def test_a_full_store_disk_stops_acks_reports_unready_and_recovers(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    small_disk: Path,
    amqp_url: str,
    prefix: str,
    queue: str,
) -> None:
    before = [uuid.uuid4().hex for _ in range(50)]
    during = [uuid.uuid4().hex for _ in range(100)]
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    daemon = make_daemon(store=small_disk / "store.db", threads=4, prefetch=8)
    bulk_publish(amqp_url, queue, json_messages(before, pad=PAD))
    wait_for(lambda: daemon.status_counts().get("completed", 0) == len(before), 30, 0.1)
    filler = small_disk / "filler"
    filled = fill(filler)
    try:
        bulk_publish(amqp_url, queue, json_messages(during, pad=PAD))
        wait_for(lambda: not daemon.ready(), 30, 0.1)
        reason = daemon.http("/readyz")[1]
        # Give the daemon time to do the wrong thing (ack, or die) while we watch. Jobs
        # may still commit into WAL space freed by an earlier checkpoint, and those are
        # acked; a message is never acked unless its job is on record.
        recorded = set(during)

        def acked_only_if_recorded() -> bool:
            on_broker = sum(broker.counts(queue))
            on_record = sum(1 for row in daemon.job_rows() if row[2] in recorded)
            return len(during) - on_broker <= on_record and daemon.alive()

        watch(acked_only_if_recorded, 5)
        held = broker.counts(queue)
        assert daemon.alive(), daemon.log_text()[-3000:]
        assert not daemon.ready()
        assert daemon.http("/healthz")[0] == 200
    finally:
        filler.unlink()
    daemon.wait_ready(60)
    total = len(before) + len(during)
    wait_for(lambda: daemon.status_counts().get("completed", 0) >= total, 60, 0.2)
    rows = daemon.job_rows()
    assert sorted(r[2] for r in rows) == sorted(before + during)
    assert Counter(r[1] for r in rows) == {"completed": total}
    wait_for(lambda: broker.count(queue) == 0, 10)
    assert broker.count(f"{queue}.dlq") == 0
    report(
        "disk_trouble",
        trouble="full",
        disk=DISK_SIZE,
        filler_bytes=filled,
        sent=total,
        sent_during_trouble=len(during),
        on_broker_during_trouble=f"{held[0]} ready + {held[1]} unacked",
        readyz_reason=repr(json.loads(reason)["reason"][:40]),
        completed=len(rows),
        lost=0,
        duplicate_jobs=0,
    )
    daemon.kill()


def test_a_read_only_store_disk_at_start_exits_1_and_loses_nothing(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    small_disk: Path,
    amqp_url: str,
    prefix: str,
    queue: str,
) -> None:
    before = [uuid.uuid4().hex for _ in range(20)]
    during = [uuid.uuid4().hex for _ in range(30)]
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    daemon = make_daemon(store=small_disk / "store.db")
    bulk_publish(amqp_url, queue, json_messages(before))
    wait_for(lambda: daemon.status_counts().get("completed", 0) == len(before), 30, 0.1)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    remount(small_disk, "ro")
    try:
        bulk_publish(amqp_url, queue, json_messages(during))
        daemon.start(wait_ready=False)
        code = daemon.wait_exit(30)
        assert code == 1, daemon.log_text()[-2000:]
        assert "checkpoint store" in daemon.log_text() and str(daemon.store) in daemon.log_text()
        assert sum(broker.counts(queue)) == len(during)
    finally:
        remount(small_disk, "rw")
    daemon.start()
    total = len(before) + len(during)
    wait_for(lambda: daemon.status_counts().get("completed", 0) >= total, 60, 0.2)
    rows = daemon.job_rows()
    assert sorted(r[2] for r in rows) == sorted(before + during)
    assert Counter(r[1] for r in rows) == {"completed": total}
    wait_for(lambda: broker.count(queue) == 0, 10)
    assert broker.count(f"{queue}.dlq") == 0
    report(
        "disk_trouble",
        trouble="read-only-at-start",
        sent=total,
        exit_code_on_read_only=code,
        on_broker_while_down=len(during),
        completed=len(rows),
        lost=0,
        duplicate_jobs=0,
    )
    daemon.kill()
