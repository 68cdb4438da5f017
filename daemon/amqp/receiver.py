"""The AMQP receiver: a child process that owns the daemon's RabbitMQ connection.

The daemon is one process bound by one GIL, and reading AMQP frames (three per
delivery, parsed in pure Python by aiormq and pamqp) took about a quarter of its
time while the machine's other core sat idle. This process does that work: it runs
:class:`~daemon.amqp.consumer.AmqpConsumer` (robust connection, topology, consumers
and their recovery), forwards each delivery to the daemon as a compact event, and
acks, nacks and publishes (with confirms) on the daemon's behalf. The daemon side
is :class:`daemon.amqp.remote.RemoteAmqp`; the frames are :mod:`daemon.amqp.wire`.

Started by the daemon with one end of a socket pair and its own pid (see
:func:`daemon.amqp.remote.receiver_command`; by hand: ``python -m
daemon.amqp.receiver FD PARENT_PID``). Events it sends (each a tuple, first item its name):

* ``("msg", queue, channel_key, tag, redelivered, body, message_id, reply_to,
  correlation_id, headers, content_type)``: a delivery; ``channel_key`` names the
  channel it came on, and its tag is settled only on that channel;
* ``("state", connected, consuming)``: on every change;
* ``("closed", channel_key)``: that channel closed (its tags are dead);
* ``("fatal", reason)``: the topology cannot be declared (the daemon exits 1);
* ``("done", request_id, error)``: a request finished (``error`` None or a reason);
* ``("alive",)``: every second, so the daemon can tell a wedged receiver from a
  quiet one.

Commands it takes: ``("ack", channel_key, tag, multiple)``, ``("nack", channel_key,
tag, requeue)``, ``("publish", request_id, exchange, routing_key, body,
properties)``, ``("cancel", request_id)`` and ``("close", request_id)``.

It ignores SIGTERM and SIGINT: the daemon decides when intake stops (a service
manager may signal the whole group, as systemd's ``KillMode=control-group`` and a
terminal's Ctrl-C do), and a settle the drain sends must still reach the broker.
When the daemon's end of the socket closes (the daemon exited or was killed), or
the daemon is no longer its parent (a process forked from the daemon may hold the
socket open), it closes the connection without acking anything more and exits, so
the broker requeues every delivery the daemon did not settle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from daemon.amqp.consumer import AmqpConsumer, QueueBinding
from daemon.amqp.delivery import Delivery
from daemon.amqp.publisher import ChannelSender
from daemon.amqp.wire import FrameWriter, read_frame
from daemon.logging_setup import setup_logging

logger = logging.getLogger("daemon.amqp.receiver")  # not __main__ under -m

#: Seconds between looks at whether every consumer is still consuming (a broker-sent
#: cancel or a half-restored channel changes that without a connection callback) and
#: whether the daemon is still the parent.
STATE_POLL = 0.2
#: Seconds between ``("alive",)`` events.
ALIVE_INTERVAL = 1.0
#: Seconds the connection gets to close once the daemon is gone; then the process
#: exits anyway (a connection attempt in progress is not always cancellable).
CLOSE_TIMEOUT = 5.0


class Receiver:
    """One receiver process's work, on its loop. ``run`` returns its exit code."""

    def __init__(self, sock: socket.socket, parent: int) -> None:
        self._sock = sock
        self._parent = parent
        self._out: FrameWriter | None = None
        self._consumer: AmqpConsumer | None = None
        self._send: ChannelSender | None = None
        #: Channels deliveries came on, by the key the daemon knows them by.
        self._channels: dict[int, Any] = {}
        self._keys: dict[int, tuple[Any, int]] = {}  # id(channel) -> (channel, key)
        self._next_key = 1
        self._state: tuple[bool, bool] = (False, False)
        self._connected = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._close_request: int | None = None  # the daemon's "close", answered at the end

    async def run(self) -> int:
        """Serve the daemon until it closes us or is gone; the exit code (1: a bug)."""
        reader, writer = await asyncio.open_connection(sock=self._sock)
        self._out = FrameWriter(writer)
        loop = asyncio.get_running_loop()
        gone = loop.create_task(self._parent_gone())
        first = loop.create_task(read_frame(reader))
        await asyncio.wait((first, gone), return_when=asyncio.FIRST_COMPLETED)
        if gone.done() or first.exception() is not None:  # gone before it said anything
            first.cancel()
            gone.cancel()
            error = None if gone.done() else first.exception()
            if error is None or isinstance(error, (asyncio.IncompleteReadError, ConnectionError)):
                return 0
            logger.error("the daemon's first frame is unreadable: %r", error)
            return 1
        (_, settings), commands = first.result()[0], first.result()[1:]
        setup_logging(settings["log_format"], settings["log_level"])
        bindings = [QueueBinding(*b) for b in settings["bindings"]]
        consumer = self._consumer = AmqpConsumer(
            settings["url"],
            bindings,
            settings["dead_letter_exchange"],
            settings["prefetch"],
            self._on_message,
            self._on_state,
        )
        self._send = ChannelSender(lambda: consumer.channel)
        consumer.start()
        serve = loop.create_task(self._serve(reader, commands))
        watch = loop.create_task(self._watch())
        code = 0
        try:
            await asyncio.wait((serve, watch, gone), return_when=asyncio.FIRST_COMPLETED)
            if gone.done() and not serve.done():
                # settles the daemon sent before it died may still be in the socket
                await asyncio.wait((serve,), timeout=1.0)
            for task in (serve, watch):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.error("amqp receiver failed", exc_info=task.exception())
                    code = 1
        finally:
            for task in (serve, watch, gone):
                task.cancel()
            await _bounded(consumer.close(), CLOSE_TIMEOUT, "closing the AMQP connection")
            if self._close_request is not None:
                self._done(self._close_request, None)
            self._out.flush()
            writer.close()
            await _bounded(writer.wait_closed(), 1.0, "closing the daemon's socket")
        return code

    async def _parent_gone(self) -> None:
        """Return once the daemon is no longer our parent (it died; a process forked
        from it may still hold the socket open, so no end of stream comes)."""
        while os.getppid() == self._parent:
            await asyncio.sleep(STATE_POLL)  # nothing signals a parent's death here
        logger.warning("daemon (pid %d) gone; closing the AMQP connection", self._parent)

    async def _serve(self, reader: asyncio.StreamReader, first: list[tuple[Any, ...]]) -> None:
        """Run the daemon's commands, in order, until it closes us or goes away."""
        for command in first:  # sent in the same frame as the settings
            if await self._run_command(command):
                return
        while True:
            try:
                commands = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                logger.info("daemon gone; closing the AMQP connection")
                return
            for command in commands:
                if await self._run_command(command):
                    return

    async def _run_command(self, command: tuple[Any, ...]) -> bool:
        """Carry out one command; True once told to close."""
        name = command[0]
        if name == "ack":
            _, key, tag, multiple = command
            await self._settle(key, tag, lambda ch: ch.basic_ack(tag, multiple=multiple))
        elif name == "nack":
            _, key, tag, requeue = command
            await self._settle(key, tag, lambda ch: ch.basic_nack(tag, requeue=requeue))
        elif name == "publish":
            _, request, exchange, routing_key, body, properties = command
            self._spawn(self._publish(request, exchange, routing_key, body, properties))
        elif name == "cancel":
            assert self._consumer is not None
            await self._consumer.cancel()
            self._done(command[1], None)
        elif name == "close":  # run() closes the connection, then answers
            if self._tasks:  # publishes waiting for confirms; a blocked broker may hold them
                await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
            self._close_request = command[1]
            return True
        else:
            logger.error("unknown command from the daemon: %r", name)
        return False

    async def _settle(self, key: int, tag: int, send: Any) -> None:
        channel = self._channels.get(key)
        if channel is None or channel.is_closed:
            # Never on another channel: the broker requeued these when this one closed.
            logger.debug("settle of tag %s dropped: its channel is closed", tag)
            return
        try:
            await send(channel)
        except Exception as exc:  # the channel died meanwhile: the broker redelivers
            logger.info("settle of tag %s not sent (%s); it will be redelivered", tag, exc)

    async def _publish(
        self,
        request: int,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: dict[str, Any],
    ) -> None:
        assert self._send is not None
        try:
            await self._send(exchange, routing_key, body, properties)
        except Exception as exc:
            self._done(request, str(exc) or type(exc).__name__)
            return
        self._done(request, None)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _done(self, request: int, error: str | None) -> None:
        assert self._out is not None
        self._out.send(("done", request, error))

    # -- from the broker ---------------------------------------------------------------
    def _on_message(self, queue: str, message: Delivery) -> None:
        assert self._out is not None
        self._out.send(
            (
                "msg",
                queue,
                self._key_of(_channel_of(message)),
                message.delivery_tag,
                bool(message.redelivered),
                message.body,
                message.message_id,
                message.reply_to,
                message.correlation_id,
                message.headers,
                message.content_type,
            )
        )

    def _key_of(self, channel: Any) -> int:
        """A key for ``channel`` that no other channel of this process ever gets (0 for
        none: settles of such a delivery are dropped, and the broker redelivers it)."""
        if channel is None:
            return 0
        known = self._keys.get(id(channel))
        if known is not None and known[0] is channel:
            return known[1]
        self._report_closed_channels()  # a new channel may reuse a closed one's id()
        key, self._next_key = self._next_key, self._next_key + 1
        self._keys[id(channel)] = (channel, key)
        self._channels[key] = channel
        return key

    def _on_state(self, connected: bool) -> None:
        self._connected = connected
        self._report_state()

    def _report_state(self) -> None:
        assert self._out is not None and self._consumer is not None
        state = (self._connected, self._consumer.consuming)
        if state != self._state:
            self._state = state
            self._out.send(("state", *state))

    def _report_closed_channels(self) -> None:
        """A channel can close alone (aio-pika then opens another): the daemon forgets
        it, and its tags, at once."""
        assert self._out is not None
        for old_id, (channel, key) in list(self._keys.items()):
            if channel.is_closed:
                del self._keys[old_id]
                self._channels.pop(key, None)
                self._out.send(("closed", key))

    async def _watch(self) -> None:
        """Report consuming changes, closed channels, a fatal topology error once, and
        that we are alive (every ALIVE_INTERVAL)."""
        assert self._consumer is not None and self._out is not None
        fatal = self._consumer.fatal
        loop = asyncio.get_running_loop()
        next_alive = loop.time()
        while True:
            if fatal is not None and fatal.done():
                self._out.send(("fatal", str(fatal.result())))
                fatal = None
            self._report_state()
            self._report_closed_channels()
            if loop.time() >= next_alive:
                self._out.send(("alive",))
                next_alive = loop.time() + ALIVE_INTERVAL
            await asyncio.sleep(STATE_POLL)  # polling aio-pika's state, which has no event


async def _bounded(work: Any, seconds: float, what: str) -> None:
    """Await ``work`` for at most ``seconds`` (then leave it); log what went wrong."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait((task,), timeout=seconds)
    if not done:
        logger.warning("%s took over %.0f s; exiting without it", what, seconds)
    elif not task.cancelled() and task.exception() is not None:
        logger.warning("%s failed: %r", what, task.exception())


def _channel_of(message: Delivery) -> Any:
    try:
        return message.channel
    except Exception:  # aio-pika's message raises once its channel closed
        return None


def main(argv: list[str]) -> int:
    """Entry point of the receiver process: ``main([_, FD, PARENT_PID])``. FD is one end
    of a socket pair whose other end the daemon (PARENT_PID) holds. Exits the process."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))
    parent = int(argv[2]) if len(argv) > 2 else os.getppid()
    return asyncio.run(_run_and_exit(Receiver(sock, parent)))


async def _run_and_exit(receiver: Receiver) -> int:
    try:
        code = await receiver.run()
    except BaseException:
        logger.exception("amqp receiver failed")
        code = 1
    # Not asyncio.run's own ending, which waits for every task: aio-pika may still be
    # retrying a connection in a task that ignores cancellation, and nothing of this
    # process needs finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
