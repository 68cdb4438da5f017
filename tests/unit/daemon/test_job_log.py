"""The job log (one line per job start and end, on its own thread) and log stamps."""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from daemon.job_log import JobEvent, JobLogWriter
from daemon.logging_setup import TextFormatter, UtcMillisStamps, setup_logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = setup_logging("text", logging.INFO, stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def start(job_id: str) -> JobEvent:
    return JobEvent(job_id, "orders", "amqp:orders")


def end(job_id: str) -> JobEvent:
    return JobEvent(job_id, "orders", "amqp:orders", "completed", 0.0125, {"job_id": job_id})


def test_posted_events_from_many_threads_are_all_written_by_close(
    log_stream: io.StringIO,
) -> None:
    writer = JobLogWriter()

    def post(thread: int) -> None:
        for i in range(200):
            writer.post([start(f"{thread}-{i}"), end(f"{thread}-{i}")])

    threads = [threading.Thread(target=post, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 4 * 200 * 2
    assert lines.count(next(line for line in lines if "id=2-7 " in line)) == 1
    assert any(
        line.endswith(
            "INFO daemon.jobs: job end id=3-199 flow=orders trigger=amqp:orders"
            " status=completed duration=0.013s"
        )
        for line in lines
    )
    assert any(
        line.endswith("INFO daemon.jobs: job start id=0-0 flow=orders trigger=amqp:orders")
        for line in lines
    )


def test_events_posted_after_close_are_written_at_once_on_the_caller(
    log_stream: io.StringIO,
) -> None:
    writer = JobLogWriter()
    writer.close()
    writer.post([start("late")])
    assert "job start id=late " in log_stream.getvalue()


def test_a_failing_stream_is_reported_and_later_lines_still_go_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class FailsOnce(io.StringIO):
        failed = False

        def write(self, text: str) -> int:
            if not self.failed:
                self.failed = True
                raise OSError("disk full")
            return super().write(text)

    stream = FailsOnce()
    handler = setup_logging("text", logging.INFO, stream)
    writer = JobLogWriter()
    try:
        writer.post([start("lost")])
        writer.close()  # the first write fails; the writer thread must survive it
        writer = JobLogWriter()
        writer.post([start("kept")])
        writer.close()
    finally:
        logging.getLogger().removeHandler(handler)
    assert "OSError: disk full" in capsys.readouterr().err
    assert "job start id=kept " in stream.getvalue()


def test_nothing_is_formatted_when_info_is_off() -> None:
    stream = io.StringIO()
    handler = setup_logging("text", logging.WARNING, stream)
    try:
        writer = JobLogWriter()
        writer.post([start("quiet"), end("quiet")])
        writer.close()
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    assert stream.getvalue() == ""


def _datetime_stamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_millisecond_stamps_match_datetime_including_rounding_edges() -> None:
    stamps = UtcMillisStamps()
    rng = random.Random(7)
    moments = [rng.uniform(0, 2e9) for _ in range(20_000)]
    # Half a microsecond below a millisecond boundary: where rounding decides the ms.
    moments += [round(m, 3) - 0.0000005 for m in moments[:5_000]]
    moments += [1_700_000_000.9999996, 1_700_000_000.0, 0.0004, 59.9995]
    assert [stamps(m) for m in moments] == [_datetime_stamp(m) for m in moments]
    # The same second twice (the cached prefix) and then the next one.
    assert stamps(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"
    assert stamps(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert stamps(1_700_000_001.0) == "2023-11-14T22:13:21.000Z"


def test_text_format_fast_path_matches_the_generic_layout() -> None:
    formatter = TextFormatter()
    record = logging.makeLogRecord(
        {"name": "daemon.x", "levelno": 20, "levelname": "INFO", "msg": "a %s", "args": ("b",)}
    )
    generic = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    generic.formatTime = lambda r, datefmt=None: _datetime_stamp(r.created)  # type: ignore[method-assign]
    assert formatter.format(record) == generic.format(record)
    multi = logging.makeLogRecord({"name": "n", "levelname": "INFO", "msg": "one\r\ntwo"})
    assert formatter.format(multi).endswith("INFO n: one\\ntwo")


def test_posts_racing_close_are_each_written_once(log_stream: io.StringIO) -> None:
    writer = JobLogWriter()
    started = threading.Barrier(5)

    def post(thread: int) -> None:
        started.wait()
        for i in range(300):
            writer.post([start(f"{thread}-{i}")])

    threads = [threading.Thread(target=post, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    writer.close()  # while the others are still posting
    for thread in threads:
        thread.join()
    ids = [line.split(" id=")[1].split()[0] for line in log_stream.getvalue().splitlines()]
    assert len(ids) == len(set(ids)) == 4 * 300


def test_a_lingering_writer_still_writes_without_close_and_close_cuts_the_linger(
    log_stream: io.StringIO,
) -> None:
    writer = JobLogWriter(linger=0.05)
    writer.post([start("soon")])
    deadline = time.monotonic() + 5
    while "id=soon " not in log_stream.getvalue():
        assert time.monotonic() < deadline, "the line was never written"
        threading.Event().wait(0.005)
    slow = JobLogWriter(linger=30.0)
    slow.post([start("lingering")])
    began = time.monotonic()
    slow.close()
    assert time.monotonic() - began < 5
    assert "id=lingering " in log_stream.getvalue()
    writer.close()
