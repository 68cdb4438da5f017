"""The daemon's small HTTP server: ``/metrics``, ``/healthz`` and ``/readyz``.

Runs the stdlib :class:`~http.server.ThreadingHTTPServer` on one owned thread (the
asyncio loop stays free of HTTP work). The callbacks run on server threads, so they
must be thread-safe and quick: read a few flags, render metrics.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from daemon.errors import DaemonError
from daemon.metrics import CONTENT_TYPE

__all__ = ["HealthServer", "Readiness"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """Answer of the readiness callback; ``reason`` says what is missing when not ready."""

    ready: bool
    reason: str = ""


MetricsRender = Callable[[], bytes]
ReadinessCheck = Callable[[], Readiness]


class HealthServer:
    """Serves metrics and health probes on ``host:port`` (port 0 picks a free one).

    ``start()`` binds and returns once the socket listens; ``stop(timeout)`` closes it
    and joins the thread. Neither is thread-safe against the other; the owner calls
    them in order.
    """

    def __init__(
        self,
        host: str,
        port: int,
        render_metrics: MetricsRender,
        readiness: ReadinessCheck,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        self._address = (host, port)
        self._render_metrics = render_metrics
        self._readiness = readiness
        self._content_type = content_type
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0). Raises RuntimeError before start()."""
        if self._server is None:
            raise RuntimeError("HealthServer is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve in a background thread.

        Raises:
            DaemonError: the address cannot be bound (in use, bad host, no permission).
        """
        if self._server is not None:
            raise RuntimeError("HealthServer already started")
        try:
            server = _Server(self._address, _Handler)
        except OSError as exc:
            host, port = self._address
            raise DaemonError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
        server.daemon_threads = True  # a stuck scrape must not block process exit
        server.render_metrics = self._render_metrics
        server.readiness = self._readiness
        server.metrics_content_type = self._content_type
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="routilux-http"
        )
        self._thread.start()
        logger.info("serving /metrics /healthz /readyz on %s:%d", self._address[0], self.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread; idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()  # returns once serve_forever has left its loop
        server.server_close()
        thread.join(timeout)
        self._server = self._thread = None


class _Server(ThreadingHTTPServer):
    """The stdlib server plus the callbacks the handler needs."""

    render_metrics: MetricsRender
    readiness: ReadinessCheck
    metrics_content_type: str


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "routilux-daemon"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = self.server.render_metrics()
            self._send(HTTPStatus.OK, body, self.server.metrics_content_type)
        elif path == "/healthz":
            self._send_json(HTTPStatus.OK, {"alive": True})
        elif path == "/readyz":
            self._send_readiness()
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})

    def _send_readiness(self) -> None:
        try:
            answer = self.server.readiness()
        except Exception as exc:  # a broken check means "not ready", not a 500
            logger.exception("readiness check failed")
            answer = Readiness(False, f"readiness check failed: {exc}")
        if answer.ready:
            self._send_json(HTTPStatus.OK, {"ready": True})
        else:
            body = {"ready": False, "reason": answer.reason}
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, body)

    def _send_json(self, status: HTTPStatus, body: dict[str, object]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Probes arrive every few seconds; keep them out of the normal log.
        logger.debug("http %s " + format, self.address_string(), *args)
