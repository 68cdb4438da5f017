"""The daemon benchmark's baselines: a raw aio-pika consume-and-ack loop and Dramatiq.

Run as a script, this module is the raw consumer process:
``python bench/baseline_consumers.py URL QUEUE OUT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aio_pika

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from amqp_load import PHASE_TIMEOUT, Timings, declare_queue, delete_queues, wait_until  # noqa: E402
from common import ensure_venv  # noqa: E402

DRAMATIQ_VENV = HERE / ".venvs" / "dramatiq"
DRAMATIQ_REQUIREMENT = "dramatiq[rabbitmq]"


def ensure_dramatiq_venv() -> Path:
    """The throwaway venv with Dramatiq and pika, made on first use; raises BenchError."""
    probe = "import dramatiq, pika; print('ok')"
    return ensure_venv(DRAMATIQ_VENV, DRAMATIQ_REQUIREMENT, probe, "ok")


async def _raw_consume(url: str, queue: str, out: Path) -> None:
    """The raw consumer process: ack each message, log (id, received, acked) times."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)
    q = await channel.declare_queue(queue, durable=True)
    finished = asyncio.Event()
    with out.open("a", buffering=1) as fh:  # line-buffered: one write per message

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received = time.time()
            await message.ack()
            fh.write(f"{message.message_id} {received} {time.time()}\n")

        await q.consume(on_message)
        await finished.wait()  # runs until terminated


class RawImpl:
    """aio-pika consume + ack, prefetch 100, in its own process."""

    name = "raw aio-pika loop"

    def __init__(self, url: str, tmp: Path, queue: str) -> None:
        self.url, self.tmp, self.queue = url, tmp, queue
        self.out = tmp / "raw.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        asyncio.run(declare_queue(self.url, self.queue))

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, self.url, self.queue, str(self.out)],
            cwd=REPO,
        )

    def _lines(self) -> list[list[str]]:
        if not self.out.exists():
            return []
        return [line.split() for line in self.out.read_text().splitlines() if line.strip()]

    def wait_done(self, count: int) -> None:
        wait_until(lambda: len(self._lines()) >= count, PHASE_TIMEOUT, f"{count} acks")

    def completions(self) -> tuple[Timings, Timings]:
        rows = self._lines()
        return {r[0]: float(r[1]) for r in rows}, {r[0]: float(r[2]) for r in rows}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        asyncio.run(delete_queues(self.url, self.queue))


DRAMATIQ_ACTOR = """
import os, time, dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
dramatiq.set_broker(RabbitmqBroker(url=os.environ["BENCH_URL"]))
OUT = os.environ["BENCH_OUT"]

@dramatiq.actor(queue_name=os.environ["BENCH_QUEUE"], max_retries=0)
def step(mid, n):
    received = time.time()
    with open(OUT, "a") as fh:
        fh.write(f"{mid} {received} {time.time()}\\n")
"""

DRAMATIQ_PUBLISH = """
import json, sys, time
import bench_actor
count, rate = int(sys.argv[1]), float(sys.argv[2])
sent, start = {}, time.monotonic()
for i in range(count):
    if rate > 0:
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    mid = f"d{i}-{time.time_ns()}"
    sent[mid] = time.time()
    bench_actor.step.send(mid, i)
print(json.dumps(sent))
"""


class DramatiqImpl:
    """Dramatiq worker (1 process, 8 threads) from its own venv."""

    name = "dramatiq 1x8"

    def __init__(self, url: str, tmp: Path, queue: str) -> None:
        self.url, self.tmp, self.queue = url, tmp, queue
        self.out = tmp / "dramatiq.log"
        (tmp / "bench_actor.py").write_text(DRAMATIQ_ACTOR)
        (tmp / "bench_publish.py").write_text(DRAMATIQ_PUBLISH)
        self.env = dict(
            os.environ,
            BENCH_URL=url,
            BENCH_OUT=str(self.out),
            BENCH_QUEUE=queue,
            PYTHONPATH=str(tmp),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.py = DRAMATIQ_VENV / "bin" / "python"

    def prepare(self) -> None:
        pass  # dramatiq declares its own queues on first send

    def publish(self, count: int, rate: float | None) -> Timings:
        result = subprocess.run(
            [str(self.py), str(self.tmp / "bench_publish.py"), str(count), str(rate or 0)],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=PHASE_TIMEOUT,
        )
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(DRAMATIQ_VENV / "bin" / "dramatiq"),
                "bench_actor",
                "--processes",
                "1",
                "--threads",
                "8",
                "--path",
                str(self.tmp),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    wait_done = RawImpl.wait_done
    completions = RawImpl.completions
    _lines = RawImpl._lines

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        asyncio.run(delete_queues(self.url, self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"))


if __name__ == "__main__":
    asyncio.run(_raw_consume(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
