"""HealthServer: /metrics, /healthz, /readyz over real HTTP on an ephemeral port."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from daemon.errors import DaemonError
from daemon.http_server import HealthServer, Readiness
from daemon.metrics import Metrics


class Gate:
    """A readiness flag another thread flips, like the service's components do."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = Readiness(False, "flows not loaded")

    def set(self, state: Readiness) -> None:
        with self._lock:
            self._state = state

    def __call__(self) -> Readiness:
        with self._lock:
            return self._state


def get(server: HealthServer, path: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def server(gate: Gate) -> Iterator[HealthServer]:
    metrics = Metrics(version="1.2.3")
    metrics.job_started("orders")
    srv = HealthServer("127.0.0.1", 0, metrics.render, gate)
    srv.start()
    yield srv
    srv.stop()


def test_metrics_endpoint_serves_prometheus_text(server: HealthServer) -> None:
    status, ctype, body = get(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert b'routilux_jobs_started_total{flow="orders"} 1.0' in body
    assert b'routilux_build_info{version="1.2.3"} 1.0' in body


def test_healthz_is_200_while_alive_even_when_not_ready(server: HealthServer) -> None:
    assert get(server, "/healthz")[0] == 200


def test_readyz_follows_the_readiness_callback(server: HealthServer, gate: Gate) -> None:
    status, ctype, body = get(server, "/readyz")
    assert (status, ctype) == (503, "application/json")
    assert json.loads(body) == {"ready": False, "reason": "flows not loaded"}
    gate.set(Readiness(True))
    status, _, body = get(server, "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True}
    gate.set(Readiness(False, "amqp disconnected"))
    assert json.loads(get(server, "/readyz")[2])["reason"] == "amqp disconnected"


def test_a_raising_readiness_check_reports_not_ready() -> None:
    def broken() -> Readiness:
        raise RuntimeError("boom")

    srv = HealthServer("127.0.0.1", 0, lambda: b"", broken)
    srv.start()
    try:
        status, _, body = get(srv, "/readyz")
    finally:
        srv.stop()
    assert status == 503 and "boom" in json.loads(body)["reason"]


def test_unknown_path_is_404(server: HealthServer) -> None:
    assert get(server, "/nope")[0] == 404


def test_stop_closes_the_port_and_is_idempotent(gate: Gate) -> None:
    srv = HealthServer("127.0.0.1", 0, lambda: b"", gate)
    srv.start()
    port = srv.port
    srv.stop()
    srv.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert not any(t.name == "routilux-http" for t in threading.enumerate())


def test_port_in_use_is_a_daemon_error_naming_the_address(server: HealthServer) -> None:
    clash = HealthServer("127.0.0.1", server.port, lambda: b"", Gate())
    with pytest.raises(DaemonError, match=rf"127.0.0.1:{server.port}"):
        clash.start()
