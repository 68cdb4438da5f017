"""The AMQP receiver process: it dies with the daemon (also when a fork of the daemon
holds its socket), is replaced when it dies or wedges alone, and outlives the SIGTERM
a service manager sends the whole group, so the drain's acks still reach the broker."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.amqp.remote import SILENCE_LIMIT, receiver_command, receiver_path

from .daemon_harness import Broker, Daemon, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited, only its parent has not reaped it


def test_the_receiver_exits_with_the_daemon_and_the_broker_gets_its_messages_back(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon(ack="on_complete")
    queue = f"{prefix}.in"
    receiver = wait_for(daemon.receiver_pid, 10)
    broker.publish(queue, [{"n": 1, "sleep": 30}])
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 1, 10)
    daemon.kill()  # SIGKILL: the daemon's end of the socket pair closes with it
    wait_for(lambda: not _alive(receiver), 10)
    wait_for(lambda: broker.count(queue) == 1, 10)  # unacked, so requeued


def test_a_killed_receiver_is_replaced_and_no_message_is_lost_or_run_twice(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    queue = f"{prefix}.in"
    first = wait_for(daemon.receiver_pid, 10)
    broker.publish(queue, [{"n": i} for i in range(200)])
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: daemon.http("/readyz")[0] == 503, 5)
    wait_for(lambda: daemon.http("/readyz")[0] == 200, 20)
    second = daemon.receiver_pid()
    assert second is not None and second != first
    broker.publish(queue, [{"n": i} for i in range(200, 300)])
    wait_for(lambda: len(daemon.completed()) == 300, 30)
    keys = [job["dedupe_key"] for job in daemon.jobs()]
    assert len(keys) == len(set(keys)) == 300
    wait_for(lambda: broker.count(queue) == 0, 10)
    assert "amqp receiver exited" in daemon.log_text()


def test_sigterm_to_daemon_and_receiver_together_still_acks_what_the_drain_finished(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    # systemd's default KillMode sends SIGTERM to every process of the unit at once
    daemon = make_daemon(ack="on_complete")
    queue = f"{prefix}.in"
    receiver = wait_for(daemon.receiver_pid, 10)
    broker.publish(queue, [{"n": 1, "sleep": 1.0}])
    wait_for(lambda: daemon.metric("routilux_jobs_running", flow="chain") == 1, 10)
    os.kill(receiver, signal.SIGTERM)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    assert len(daemon.completed()) == 1
    assert broker.count(queue) == 0  # acked after the job ended, through the receiver
    wait_for(lambda: not _alive(receiver), 10)


def test_a_wedged_receiver_is_killed_and_replaced(
    make_daemon: Callable[..., Daemon], broker: Broker, prefix: str
) -> None:
    daemon = make_daemon()
    first = wait_for(daemon.receiver_pid, 10)
    os.kill(first, signal.SIGSTOP)  # alive, but says nothing any more
    wait_for(lambda: daemon.receiver_pid() not in (None, first), SILENCE_LIMIT + 15)
    wait_for(lambda: daemon.http("/readyz")[0] == 200, 20)
    broker.publish(f"{prefix}.in", [{"n": 1}])
    wait_for(lambda: len(daemon.completed()) == 1, 10)
    assert "amqp receiver silent" in daemon.log_text()
    wait_for(lambda: not _alive(first), 5)


def _start_receiver() -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A receiver process as the daemon starts one; returns it and our socket end."""
    ours, theirs = socket.socketpair()
    env = dict(os.environ, ROUTILUX_RECEIVER_SYS_PATH=json.dumps(receiver_path()))
    process = subprocess.Popen(
        receiver_command(theirs.fileno()), pass_fds=(theirs.fileno(),), env=env
    )
    theirs.close()
    return process, ours


def _frame(*events: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(list(events))
    return struct.pack(">I", len(payload)) + payload


def _wait_for_event(sock: socket.socket, wanted: tuple[Any, ...], timeout: float) -> None:
    """Read the receiver's frames until ``wanted`` is among their events."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        while len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
            (length,) = struct.unpack(">I", data[:4])
            if wanted in pickle.loads(data[4 : 4 + length]):
                return
            data = data[4 + length :]
    raise AssertionError(f"the receiver sent no {wanted} within {timeout}s")


INIT = {
    "bindings": [],
    "dead_letter_exchange": "unused.dlx",
    "prefetch": 1,
    "log_format": "text",
    "log_level": 20,
}


def test_commands_sent_with_the_settings_run_and_the_end_of_the_socket_ends_the_receiver() -> None:
    # a "broker" that takes the connection and never answers: the receiver is still
    # in the AMQP handshake when we go away, and must exit all the same
    with socket.create_server(("127.0.0.1", 0)) as silent:
        process, ours = _start_receiver()
        try:
            init = {**INIT, "url": f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/"}
            ours.sendall(_frame(("init", init), ("cancel", 1)))
            _wait_for_event(ours, ("done", 1, None), 15)
            ours.close()
            assert process.wait(15) == 0
        finally:
            process.kill()  # it ignores SIGTERM; a no-op once it exited
            process.wait(5)


def test_the_receiver_exits_when_the_daemon_is_gone_though_a_fork_holds_its_socket(
    amqp_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        f"""
import json, os, socket, subprocess, sys, time, pickle, struct
sys.path[:0] = {[str(p) for p in sys.path]!r}
from daemon.amqp.remote import receiver_command
ours, theirs = socket.socketpair()
env = dict(os.environ, ROUTILUX_RECEIVER_SYS_PATH=json.dumps(sys.path))
child = subprocess.Popen(receiver_command(theirs.fileno()), pass_fds=(theirs.fileno(),), env=env)
theirs.close()
init = {{**{INIT!r}, "url": {amqp_url!r}}}
payload = pickle.dumps([("init", init)])
ours.sendall(struct.pack(">I", len(payload)) + payload)
print(child.pid, flush=True)
if os.fork() == 0:  # like a multiprocessing worker: holds every fd, never execs
    time.sleep(60)
    os._exit(0)
time.sleep(1)
os._exit(0)  # the daemon dies; the fork keeps the socket open
"""
    )
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE) as parent:
        assert parent.stdout is not None
        receiver = int(parent.stdout.readline())
        parent.wait(10)
    try:
        wait_for(lambda: not _alive(receiver), 10)
    finally:
        subprocess.run(["pkill", "-f", str(script)], check=False)  # the fork


def test_a_first_frame_that_is_not_ours_makes_the_receiver_exit_1() -> None:
    process, ours = _start_receiver()
    try:
        ours.sendall(struct.pack(">I", 5) + b"hello")  # not a pickle
        assert process.wait(15) == 1
    finally:
        ours.close()
        process.kill()  # a no-op once it exited
        process.wait(5)
