"""The daemon's side of the AMQP receiver process (:mod:`daemon.amqp.receiver`).

:class:`RemoteAmqp` starts the receiver, keeps one running (a receiver that dies is
a dropped connection: it is started again), and offers the service what it needs
of the broker: deliveries as :class:`RemoteDelivery` (the intake and the ack
batcher use them like aiormq's), ``consuming`` for ``/readyz``, ``publish`` with the
broker's confirm, ``cancel`` and ``close``.

Why a second process: the daemon is bound by one GIL, and the receiver's work
(reading and parsing three AMQP frames per delivery, writing acks) then runs on
the machine's other core instead of taking turns with the jobs.

A delivery's channel is a :class:`RemoteChannel`. It closes when the receiver says
its connection dropped or when the receiver goes away; acks on a closed channel
are never sent (the broker has requeued those deliveries and the claims turn their
redeliveries into duplicates), exactly as with a channel of this process.

    amqp = RemoteAmqp(url, bindings, "routilux.dlx", 200, intake.on_message, on_state)
    amqp.start()
    ...
    await amqp.cancel()   # stop receiving; settles still go out
    await amqp.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.amqp.consumer import OnMessage, QueueBinding
from daemon.amqp.wire import FrameWriter, read_frame
from daemon.errors import BrokerUnavailable
from daemon.logging_setup import current_log_settings

__all__ = ["RemoteAmqp", "RemoteChannel", "RemoteDelivery"]

logger = logging.getLogger(__name__)

#: Seconds before a receiver that exited is started again; doubled after each one
#: that exits within RESTART_RESET seconds, up to RESTART_DELAY_MAX.
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
RESTART_RESET = 30.0
#: Receivers in a row that exit before saying anything: the installation is broken
#: (e.g. an import fails), and the daemon exits 1 instead of retrying forever.
FAILED_STARTS_FATAL = 5
#: Seconds ``cancel`` and ``close`` wait for the receiver to answer, per bound queue
#: and once more (the receiver cancels each queue's consumer with a 5 s timeout).
REQUEST_TIMEOUT = 5.0
#: Ticks of a second without any event (it sends one every second) after which a
#: receiver counts as wedged and is killed, then replaced.
SILENCE_LIMIT = 10
#: Environment variable carrying the import path to the receiver.
_PATH_VARIABLE = "ROUTILUX_RECEIVER_SYS_PATH"
#: The folder holding the ``daemon`` package.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

#: The receiver's first lines: signals ignored before the slow imports (a group's
#: SIGTERM can come at any time), the working directory off the path before any
#: import (a project's ``logging.py`` must not shadow the standard one), then
#: :func:`receiver_path`.
_BOOT = f"""\
import sys
del sys.path[0]
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
import json, os
sys.path[:] = json.loads(os.environ.pop({_PATH_VARIABLE!r}))
try:
    from daemon.amqp.receiver import main
except Exception as exc:
    print(f"amqp receiver cannot start: {{exc!r}}", file=sys.stderr, flush=True)
    sys.exit(2)
sys.exit(main(sys.argv))
"""


def receiver_command(fd: int) -> list[str]:
    """The command line of a receiver process talking over socket ``fd`` to this one."""
    return [sys.executable, "-c", _BOOT, str(fd), str(os.getpid())]


def receiver_path() -> list[str]:
    """The receiver's import path: this ``daemon`` package first, then this process's
    path without the working directory (where flow modules live, which the receiver
    does not import and which could shadow what it does)."""
    here = {"", os.getcwd(), _PACKAGE_ROOT}
    return [_PACKAGE_ROOT, *(p for p in sys.path if isinstance(p, str) and p not in here)]


class RemoteChannel:
    """One channel of the receiver; tags of its deliveries mean nothing on any other."""

    __slots__ = ("is_closed", "key")

    def __init__(self, key: int) -> None:
        self.key = key
        self.is_closed = key == 0  # 0: the receiver could not name the channel


class RemoteDelivery:
    """A delivery received by the receiver process (the :class:`Delivery` protocol)."""

    __slots__ = (
        "_link",
        "_processed",
        "body",
        "channel",
        "content_type",
        "correlation_id",
        "delivery_tag",
        "headers",
        "message_id",
        "redelivered",
        "reply_to",
    )

    def __init__(self, link: _Link, event: tuple[Any, ...]) -> None:
        (
            _,
            _queue,
            key,
            self.delivery_tag,
            self.redelivered,
            self.body,
            self.message_id,
            self.reply_to,
            self.correlation_id,
            self.headers,
            self.content_type,
        ) = event
        self._link = link
        self.channel = link.channel(key)
        self._processed = False

    @property
    def processed(self) -> bool:
        return self._processed

    async def ack(self, multiple: bool = False) -> None:
        """Ack it (with ``multiple``, every earlier unsettled one on its channel too)."""
        self._settle(("ack", self.channel.key, self.delivery_tag, multiple))

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        """Reject it, back to the queue if ``requeue``."""
        if multiple:
            raise ValueError("nack with multiple is not used by the daemon")
        self._settle(("nack", self.channel.key, self.delivery_tag, requeue))

    def _settle(self, command: tuple[Any, ...]) -> None:
        if self._processed:
            raise RuntimeError(f"delivery {self.message_id} was already acked or nacked")
        if self.channel.is_closed:
            raise BrokerUnavailable("the delivery's channel is closed")
        if self.delivery_tag is None:
            raise RuntimeError("delivery has no delivery tag")
        self._processed = True
        self._link.out.send(command)


class _Link:
    """One receiver process as the daemon sees it: its frames, channels and requests."""

    def __init__(self, out: FrameWriter) -> None:
        self.out = out
        self.alive = True
        self.frames = 0  # received so far
        self._channels: dict[int, RemoteChannel] = {}
        self._requests: dict[int, asyncio.Future[str | None]] = {}
        self._ids = itertools.count(1)

    def channel(self, key: int) -> RemoteChannel:
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = RemoteChannel(key)
        return channel

    def close_channel(self, key: int) -> None:
        """One channel of the receiver closed."""
        channel = self._channels.pop(key, None)
        if channel is not None:
            channel.is_closed = True

    def close_channels(self) -> None:
        """The receiver's connection dropped: every channel it had is gone."""
        for key in list(self._channels):
            self.close_channel(key)

    def request(self, *command: Any) -> asyncio.Future[str | None]:
        """Send ``(name, id, *args)``; the future gets the receiver's error text or None."""
        request_id = next(self._ids)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        if not self.alive:
            future.set_result("the AMQP receiver is not running")
            return future
        self._requests[request_id] = future
        self.out.send((command[0], request_id, *command[1:]))
        return future

    def forget(self, future: asyncio.Future[str | None]) -> None:
        """Drop a request nobody waits for any more (it timed out)."""
        for request_id, pending in list(self._requests.items()):
            if pending is future:
                del self._requests[request_id]

    def done(self, request_id: int, error: str | None) -> None:
        future = self._requests.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(error)

    def die(self) -> None:
        self.alive = False
        self.close_channels()
        for future in self._requests.values():
            if not future.done():
                future.set_result("the AMQP receiver exited")
        self._requests.clear()


class RemoteAmqp:
    """Runs the AMQP side in a receiver process; the interface of
    :class:`~daemon.amqp.consumer.AmqpConsumer` plus :meth:`publish`.

    Lifecycle (on the loop): :meth:`start` -> :meth:`cancel` -> :meth:`close`.
    ``on_message(queue, delivery)`` and ``on_state(connected)`` are called on the loop;
    ``fatal`` gets the error that makes the daemon exit (a queue declared with other
    arguments).
    """

    def __init__(
        self,
        url: str,
        bindings: list[QueueBinding],
        dead_letter_exchange: str,
        prefetch: int,
        on_message: OnMessage,
        on_state: Callable[[bool], None],
    ) -> None:
        self._init = {
            "url": url,
            "bindings": [(b.queue, b.flow, b.trigger, b.entry) for b in bindings],
            "dead_letter_exchange": dead_letter_exchange,
            "prefetch": prefetch,
        }
        self._on_message = on_message
        self._on_state = on_state
        self._link: _Link | None = None
        self._connected = False
        self._consuming = False
        self._cancelled = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()  # set by cancel() and close()
        self._request_timeout = REQUEST_TIMEOUT * (len(bindings) + 1)
        self._process: asyncio.subprocess.Process | None = None
        self.fatal: asyncio.Future[BaseException] | None = None

    @property
    def consuming(self) -> bool:
        """True while the receiver is connected with every bound queue's consumer active."""
        return self._link is not None and self._consuming and not self._cancelled

    def start(self) -> None:
        """Start the receiver in the background (and again whenever it exits)."""
        loop = asyncio.get_running_loop()
        self.fatal = loop.create_future()
        fmt, level = current_log_settings()
        self._init.update(log_format=fmt, log_level=level)
        self._task = loop.create_task(self._supervise(), name="amqp-receiver")

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: dict[str, Any]
    ) -> None:
        """Publish through the receiver and wait for the broker's confirm.

        Raises BrokerUnavailable if the broker is unreachable, the publish is not
        confirmed, or the receiver is not running.
        """
        link = self._link
        if link is None or not link.alive or self._closing:
            raise BrokerUnavailable("not connected to RabbitMQ")
        error = await link.request("publish", exchange, routing_key, body, properties)
        if error is not None:
            raise BrokerUnavailable(error)

    async def cancel(self) -> None:
        """Stop receiving new deliveries; unacked ones stay with us to ack or nack."""
        self._cancelled = True
        self._stopping.set()
        await self._ask("cancel")

    async def close(self) -> None:
        """Close the connection (unacked deliveries go back to the broker) and stop
        the receiver."""
        self._closing = self._cancelled = True
        self._stopping.set()
        await self._ask("close")
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._request_timeout)
            except asyncio.TimeoutError:
                logger.warning("amqp receiver did not exit; killing it")
                self._kill()
                await asyncio.gather(self._task, return_exceptions=True)
        self._set_state(False, False)

    async def _ask(self, name: str) -> None:
        link = self._link
        if link is None or not link.alive:
            return
        request = link.request(name)
        try:
            error = await asyncio.wait_for(asyncio.shield(request), self._request_timeout)
        except asyncio.TimeoutError:
            link.forget(request)
            error = f"no answer in {self._request_timeout:.0f} s"
        if error is not None:
            logger.warning("amqp receiver: %s failed: %s", name, error)

    def _kill(self) -> None:
        if self._process is not None:
            _kill(self._process)

    # -- the receiver process ----------------------------------------------------------
    async def _supervise(self) -> None:
        delay, failed_starts = RESTART_DELAY, 0
        loop = asyncio.get_running_loop()
        # Once intake is cancelled (the drain) a new receiver would consume again.
        while not self._closing and not self._cancelled:
            started = loop.time()
            link: _Link | None = None
            try:
                link, code = await self._run_receiver()
            except Exception:
                logger.exception("amqp receiver failed")
                code = None
            if self._closing or self._cancelled:
                return
            failed_starts = 0 if link is not None and link.frames else failed_starts + 1
            if failed_starts >= FAILED_STARTS_FATAL:
                self._set_fatal(
                    f"the AMQP receiver process exited {failed_starts} times in a row before"
                    f" it started (last exit code {code}); see the lines it logged above"
                )
                return
            ran_long = loop.time() - started >= RESTART_RESET
            delay = RESTART_DELAY if ran_long else delay
            logger.warning(
                "amqp receiver exited (code %s); starting another in %.0f s", code, delay
            )
            await self._pause(delay)
            delay = min(delay * 2, RESTART_DELAY_MAX)

    async def _pause(self, seconds: float) -> None:
        """The back-off before a restart; cut short by cancel() and close()."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run_receiver(self) -> tuple[_Link | None, int | None]:
        """Start one receiver and serve its events until it goes away: its link (None if
        it never started) and exit code."""
        ours, theirs = socket.socketpair()
        try:
            env = dict(os.environ, **{_PATH_VARIABLE: json.dumps(receiver_path())})
            self._process = process = await asyncio.create_subprocess_exec(
                *receiver_command(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        link = _Link(FrameWriter(writer))
        link.out.send(("init", self._init))
        link.out.flush()  # alone in its frame
        self._link = link
        loop = asyncio.get_running_loop()
        watchdog = loop.create_task(self._watch_silence(link, process))
        try:
            while True:
                events = await read_frame(reader)
                link.frames += 1
                for event in events:
                    self._on_event(link, event)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the receiver exited
        except Exception:  # a broken frame, or a bug here: start over with a new one
            logger.exception("reading from the amqp receiver failed; stopping it")
            _kill(process)
        finally:
            watchdog.cancel()
            link.die()
            self._link = None
            self._set_state(False, False)
            writer.close()
        return link, await process.wait()

    async def _watch_silence(self, link: _Link, process: asyncio.subprocess.Process) -> None:
        """Kill a receiver that stopped talking (it sends an event every second).

        Counts its own ticks without a frame, not seconds: after the whole group was
        paused (Ctrl-Z, a frozen container) or this loop stalled, a late tick is one.
        """
        silent_ticks, frames_seen = 0, link.frames
        while link.alive:
            await asyncio.sleep(1.0)  # a timer over the receiver's heartbeat
            silent_ticks = silent_ticks + 1 if link.frames == frames_seen else 0
            frames_seen = link.frames
            if silent_ticks >= SILENCE_LIMIT:
                logger.error("amqp receiver silent for %d s; killing it", silent_ticks)
                _kill(process)
                return

    def _set_fatal(self, reason: str) -> None:
        if self.fatal is not None and not self.fatal.done():
            self.fatal.set_result(BrokerUnavailable(reason))

    def _on_event(self, link: _Link, event: tuple[Any, ...]) -> None:
        name = event[0]
        if name == "msg":
            try:
                self._on_message(event[1], RemoteDelivery(link, event))
            except Exception:  # as aiormq does for a failed consumer: log, keep reading
                logger.exception("handling a delivery from %s failed", event[1])
        elif name == "done":
            link.done(event[1], event[2])
        elif name == "state":
            if not event[1]:
                link.close_channels()
            self._set_state(event[1], event[2])
        elif name == "closed":
            link.close_channel(event[1])
        elif name == "fatal":
            self._set_fatal(event[1])
        elif name == "alive":
            pass  # the frame itself was the news
        else:
            logger.error("unknown event from the amqp receiver: %r", name)

    def _set_state(self, connected: bool, consuming: bool) -> None:
        self._consuming = consuming
        if connected != self._connected:
            self._connected = connected
            self._on_state(connected)


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile
            process.kill()
