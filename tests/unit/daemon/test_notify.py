"""sd_notify: datagrams to a real unix socket, path and abstract ('@') forms."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_ready_sends_ready_and_status_in_one_datagram(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    assert Notifier(path).ready("consuming 1 queue")
    assert sock.recv(4096) == b"READY=1\nSTATUS=consuming 1 queue"


def test_stopping_and_status_lines(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier(path)
    notifier.stopping()
    notifier.status("draining 3 jobs")
    assert sock.recv(4096) == b"STOPPING=1"
    assert sock.recv(4096) == b"STATUS=draining 3 jobs"


def test_abstract_socket_address_starting_with_at() -> None:
    name = f"routilux-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier("@" + name).ready()
        assert sock.recv(4096) == b"READY=1"


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_from_env_reads_notify_socket(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled and notifier.status("hi")
    assert sock.recv(4096) == b"STATUS=hi"


def test_a_vanished_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert Notifier(str(tmp_path / "gone.sock")).ready() is False
    assert "sd_notify" in caplog.text
