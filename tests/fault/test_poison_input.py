"""Scenario 4: poison input. Every message ends as a job or dead-lettered with a reason.

The rule (DESIGN.md §4 "Messages"): a body that is a JSON object starts a job
(a known ``message_id`` starts none); anything else is dead-lettered to
``<queue>.dlq`` with header ``x-routilux-error``. The daemon stays ready and its
memory bounded throughout. Hypothesis generates bodies (valid objects, wrong JSON
types, invalid JSON and UTF-8, deep nesting, huge bodies, duplicate keys), message
ids (fresh or repeated) and headers (unknown names, odd value types); the
expected outcome of each is computed with the rule above, then the test checks the
store and the dead-letter queue against it exactly.

A message *without* ``message_id`` cannot be sent from here: aiormq gives every
message lacking one a random id (from ``random``, which Hypothesis seeds, so they
would all collide). Ids are therefore always set by the test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest
from faultbroker import Broker, declare_queue
from faultkit import FaultDaemon, Sampler, report, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

#: The fuzz's deepest nesting: past the accepted depth, short of json's recursion limit
#: (a deeper body is covered by its own test below).
SAFE_DEPTH = 800
#: Resident memory the daemon may grow by over a fuzz run (kB).
RSS_GROWTH_LIMIT_KB = 200_000
HUGE = 2 * 1024 * 1024


#: The contract's deepest accepted body (daemon.amqp.intake.MAX_BODY_DEPTH).
MAX_DEPTH = 200


def expected_outcome(body: bytes) -> str:
    """``"job"`` or ``"dead"`` for a body: a JSON object (no NaN/Infinity) nested at most
    MAX_DEPTH levels becomes a job; anything else is dead-lettered."""

    def no_constants(name: str) -> None:
        raise ValueError(name)

    try:
        value = json.loads(body, parse_constant=no_constants)
    except (ValueError, RecursionError):
        return "dead"
    return "job" if isinstance(value, dict) and _depth(value) <= MAX_DEPTH else "dead"


def _depth(value: object) -> int:
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            todo.extend((c, level + 1) for c in (item.values() if isinstance(item, dict) else item))
    return deepest


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if draw(st.integers(0, 10**6)) % 100 == 7:  # about 1 in 100: a 2 MB body
        blob = "x" * HUGE
        return json.dumps({"blob": blob}).encode() if kind % 2 else blob.encode()
    if kind <= 2:
        return json.dumps(draw(st.dictionaries(st.text(max_size=12), json_value))).encode()
    if kind == 3:  # wrong JSON types
        return json.dumps(draw(json_value)).encode()
    if kind == 4:  # invalid UTF-8 somewhere in an object
        junk = draw(st.binary(min_size=1, max_size=16)) + b"\xff\xfe"
        return b'{"a": "' + junk + b'"}'
    if kind == 5:  # arbitrary bytes
        return draw(st.binary(max_size=200))
    if kind == 6:  # deep nesting, under the recursion limit
        depth = draw(st.integers(1, SAFE_DEPTH))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"k":', b"}")]))
        core = b"1" if opener != b"[" else b""
        return b'{"deep": ' + opener * depth + core + closer * depth + b"}"
    if kind == 7:  # duplicate keys
        key = draw(st.text(max_size=5))
        return json.dumps({key: 1})[:-1].encode() + b", " + json.dumps(key).encode() + b": 2}"
    if kind == 8:  # text that is not JSON
        return draw(st.text(max_size=100)).encode()
    return b'{"n": 1, "sleep": "soon", "crash": "yes"}'  # wrong types for the flow


header_value = st.one_of(
    st.text(max_size=30), st.integers(-(2**31), 2**31 - 1), st.booleans(), st.none()
)
headers = st.dictionaries(st.text(min_size=1, max_size=20), header_value, max_size=5)


@dataclass
class Ledger:
    """What was sent and what must come of it."""

    jobs_by_id: set[str] = field(default_factory=set)
    #: A repeated id with a bad body is dead-lettered again: count them all.
    dead_by_id: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    sent: int = 0

    def record(self, body: bytes, message_id: str) -> None:
        self.sent += 1
        outcome = expected_outcome(body)
        if outcome == "dead":
            self.dead_by_id[message_id] += 1
        elif message_id in self.jobs_by_id:
            self.duplicates += 1
        else:
            self.jobs_by_id.add(message_id)


class Sender:
    """One confirmed publishing channel, on a private event loop owned by the test."""

    def __init__(self, url: str, queue: str) -> None:
        self.queue = queue
        self.loop = asyncio.new_event_loop()
        self.connection, self.channel = self.loop.run_until_complete(self._open(url))

    @staticmethod
    async def _open(url: str) -> tuple[Any, Any]:
        connection = await aio_pika.connect(url)
        return connection, await connection.channel(publisher_confirms=True)

    def send(self, body: bytes, message_id: str, extra: dict[str, Any]) -> None:
        message = aio_pika.Message(body, message_id=message_id, headers=extra, delivery_mode=2)
        publish = self.channel.default_exchange.publish(message, routing_key=self.queue)
        self.loop.run_until_complete(publish)

    def close(self) -> None:
        self.loop.run_until_complete(self.connection.close())
        self.loop.close()


def settle_and_check(daemon: FaultDaemon, broker: Broker, queue: str, ledger: Ledger) -> dict:
    """Wait for every message to be accounted for; assert the outcome exactly."""
    want_jobs = len(ledger.jobs_by_id)
    want_dead = ledger.dead_by_id.total()
    wait_for(lambda: len(daemon.job_rows()) >= want_jobs, 120, 0.2)
    wait_for(lambda: broker.count(f"{queue}.dlq") >= want_dead, 60, 0.2)
    wait_for(lambda: broker.count(queue) == 0, 60, 0.2)
    terminal = ("completed", "failed")
    wait_for(lambda: sum(daemon.status_counts()[s] for s in terminal) >= want_jobs, 120, 0.2)
    rows = daemon.job_rows()
    keys = Counter(r[2] for r in rows)
    assert set(keys) == ledger.jobs_by_id
    assert all(n == 1 for n in keys.values()), "a message id ran twice"
    dead = broker.drain(f"{queue}.dlq")
    unexpected = [
        (m.message_id, m.headers.get("x-routilux-error"), m.body[:80])
        for m in dead
        if m.message_id not in ledger.dead_by_id
    ]
    assert unexpected == [], "dead-lettered, but a JSON object by the contract"
    assert Counter(m.message_id for m in dead) == ledger.dead_by_id
    reasons = [m.headers.get("x-routilux-error") for m in dead]
    assert all(reasons), "a dead letter without x-routilux-error"
    statuses = Counter(r[1] for r in rows)
    assert set(statuses) <= set(terminal)
    return {"jobs": len(rows), "dead_lettered": len(dead), **statuses}


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(200, id="quick"),
        pytest.param(10_000, id="long", marks=[pytest.mark.soak, pytest.mark.timeout(3600)]),
    ],
)
def test_fuzzed_messages_each_become_a_job_or_a_dead_letter_with_a_reason(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    amqp_url: str,
    prefix: str,
    queue: str,
    examples: int,
) -> None:
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    daemon = make_daemon(start=False, threads=4, prefetch=16)
    daemon.extra_env["FAULT_INERT"] = "1"  # fuzzed "sleep"/"crash" keys do nothing
    daemon.start()
    sampler = Sampler(daemon)
    baseline = sampler.sample()["VmRSS"]
    ledger = Ledger()
    sender = Sender(amqp_url, queue)
    unready: list[int] = []
    run = uuid.uuid4().hex[:8]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=bodies(), id_kind=st.integers(0, 9), extra=headers)
    def send_one(body: bytes, id_kind: int, extra: dict[str, Any]) -> None:
        if id_kind == 1 and ledger.jobs_by_id:
            message_id = sorted(ledger.jobs_by_id)[ledger.sent % len(ledger.jobs_by_id)]
        else:  # a counter: uuid4 inside a Hypothesis test is not guaranteed unique
            message_id = f"{run}-{ledger.sent}"
        sender.send(body, message_id, extra)
        ledger.record(body, message_id)
        if ledger.sent % 10 == 0:
            sampler.sample()
            if not daemon.ready():
                unready.append(ledger.sent)

    try:
        send_one()
    finally:
        sender.close()
    counts = settle_and_check(daemon, broker, queue, ledger)
    sampler.sample()
    assert unready == [], f"not ready after messages {unready[:10]}"
    growth = sampler.peak("VmRSS") - baseline
    assert growth < RSS_GROWTH_LIMIT_KB, f"RSS grew by {growth} kB"
    report(
        "poison_input",
        sent=ledger.sent,
        duplicates_sent=ledger.duplicates,
        **counts,
        lost=0,
        rss_baseline_kb=baseline,
        rss_peak_kb=sampler.peak("VmRSS"),
        rss_end_kb=sampler.samples[-1][1]["VmRSS"],
        unready_samples=len(unready),
    )


def test_a_body_nested_too_deep_to_parse_is_dead_lettered(
    make_daemon: Callable[..., FaultDaemon],
    broker: Broker,
    amqp_url: str,
    prefix: str,
    queue: str,
) -> None:
    declare_queue(amqp_url, queue, f"{prefix}.dlx")
    daemon = make_daemon()
    broker.publish(queue, [b"[" * 5000 + b"]" * 5000], message_id="too-deep")
    broker.publish(queue, [{"n": 1}], message_id="fine")
    wait_for(lambda: daemon.status_counts().get("completed", 0) == 1, 20)
    wait_for(lambda: broker.count(f"{queue}.dlq") == 1, 5)
    (dead,) = broker.drain(f"{queue}.dlq")
    assert dead.message_id == "too-deep" and dead.headers.get("x-routilux-error")
