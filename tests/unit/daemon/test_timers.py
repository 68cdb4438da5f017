"""Timer slots, catch-up policies and the ledger, driven by a fake clock (no waiting)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.timers import (
    MAX_CATCH_UP,
    MemoryLedger,
    TimerSource,
    TimerSpec,
    missed_slots,
    run_id,
    slots_between,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def interval(seconds: float = 60, catch_up: str = "once") -> TimerSpec:
    return TimerSpec("interval:f", "f", "interval", seconds=seconds, catch_up=catch_up)  # type: ignore[arg-type]


def cron(expr: str, tz: str = "UTC", catch_up: str = "once") -> TimerSpec:
    return TimerSpec("cron:f", "f", "cron", cron=expr, timezone=tz, catch_up=catch_up)  # type: ignore[arg-type]


def at(*args: int, tz: Any = UTC) -> datetime:
    return datetime(*args, tzinfo=tz)


def test_interval_slots_are_aligned_so_restarts_see_the_same_instants() -> None:
    trigger = interval(60).build_trigger()
    slots = slots_between(trigger, at(2026, 1, 1, 10, 0, 17), at(2026, 1, 1, 10, 3, 0))
    assert slots == [at(2026, 1, 1, 10, 1), at(2026, 1, 1, 10, 2), at(2026, 1, 1, 10, 3)]


def test_no_ledger_entry_means_nothing_is_missed() -> None:
    assert missed_slots(interval().build_trigger(), None, at(2026, 1, 1), "all") == []


@pytest.mark.parametrize(
    ("policy", "expected_minutes"),
    [("skip", []), ("once", [5]), ("all", [1, 2, 3, 4, 5])],
)
def test_catch_up_policy_decides_which_missed_slots_run(
    policy: str, expected_minutes: list[int]
) -> None:
    trigger = interval(60).build_trigger()
    missed = missed_slots(trigger, at(2026, 1, 1, 10, 0), at(2026, 1, 1, 10, 5, 30), policy)  # type: ignore[arg-type]
    assert missed == [at(2026, 1, 1, 10, m) for m in expected_minutes]


def test_catch_up_all_is_capped_to_the_newest_slots() -> None:
    trigger = interval(1).build_trigger()
    start = at(2026, 1, 1)
    missed = missed_slots(trigger, start, start + timedelta(seconds=5000), "all")
    assert len(missed) == MAX_CATCH_UP
    assert missed[-1] == start + timedelta(seconds=5000)


def test_cron_spring_forward_skips_the_missing_hour_without_duplicates() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST in Berlin: "30 2 * * *" has no 02:30 that day.
    trigger = cron("30 2 * * *", "Europe/Berlin").build_trigger()
    slots = slots_between(trigger, at(2026, 3, 27, 12, tz=BERLIN), at(2026, 3, 31, 12, tz=BERLIN))
    days = [s.astimezone(BERLIN).day for s in slots]
    assert 27 not in days and days == sorted(set(days))
    assert all(s.astimezone(BERLIN).hour in (2, 3) for s in slots)
    assert len({run_id("cron:f", s) for s in slots}) == len(slots)


def test_cron_fall_back_gives_distinct_run_ids_for_the_repeated_hour() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET: 02:xx happens twice in Berlin.
    trigger = cron("*/30 * * * *", "Europe/Berlin").build_trigger()
    slots = slots_between(
        trigger, at(2026, 10, 25, 1, 45, tz=BERLIN), at(2026, 10, 25, 3, 15, tz=BERLIN)
    )
    utc_slots = [s.astimezone(UTC) for s in slots]
    assert utc_slots == sorted(set(utc_slots)), "slots strictly increase in real time"
    ids = [run_id("cron:f", s) for s in slots]
    assert len(set(ids)) == len(ids)
    assert all(i.endswith("+00:00") for i in ids)


def test_cron_slots_follow_the_time_zone_across_dst() -> None:
    trigger = cron("0 9 * * *", "Europe/Berlin").build_trigger()
    slots = slots_between(trigger, at(2026, 3, 28, 10, tz=UTC), at(2026, 3, 30, 10, tz=UTC))
    # 09:00 local is 08:00 UTC before the switch and 07:00 UTC after it.
    assert [s.astimezone(UTC).hour for s in slots] == [7, 7]
    assert [s.astimezone(BERLIN).hour for s in slots] == [9, 9]


class FakeJobs:
    """Records launches; a run id launched twice is reported as a duplicate."""

    def __init__(self) -> None:
        self.run_ids: list[str] = []

    async def launch(self, spec: TimerSpec, slot: datetime) -> None:
        rid = run_id(spec.trigger_id, slot)
        if rid in self.run_ids:
            return None
        self.run_ids.append(rid)
        return None


def run_catch_up(source: TimerSource) -> None:
    async def main() -> None:
        await asyncio.gather(*await source.catch_up())

    asyncio.run(main())


def test_restart_catch_up_runs_missed_slots_once_and_records_them() -> None:
    ledger = MemoryLedger()
    ledger.record_slot("interval:f", at(2026, 1, 1, 10, 0))
    jobs = FakeJobs()
    now = at(2026, 1, 1, 10, 3, 10)
    spec = interval(60, catch_up="all")
    run_catch_up(TimerSource([spec], ledger, jobs.launch, clock=lambda: now))
    assert jobs.run_ids == [run_id("interval:f", at(2026, 1, 1, 10, m)) for m in (1, 2, 3)]
    assert ledger.last_slot("interval:f") == at(2026, 1, 1, 10, 3)
    # A second restart at the same moment has nothing left to catch up.
    run_catch_up(TimerSource([spec], ledger, jobs.launch, clock=lambda: now))
    assert len(jobs.run_ids) == 3


def test_a_slot_that_failed_to_start_is_not_recorded() -> None:
    ledger = MemoryLedger()
    ledger.record_slot("cron:f", at(2026, 1, 1, 0, 0))

    async def failing(spec: TimerSpec, slot: datetime) -> None:
        raise RuntimeError("store down")

    now = at(2026, 1, 1, 0, 10)
    run_catch_up(TimerSource([cron("*/5 * * * *")], ledger, failing, clock=lambda: now))
    assert ledger.last_slot("cron:f") == at(2026, 1, 1, 0, 0)


def test_scheduler_fires_interval_slots_with_their_scheduled_time() -> None:
    fired: list[datetime] = []

    async def main() -> None:
        enough = asyncio.Event()

        async def launch(spec: TimerSpec, slot: datetime) -> None:
            fired.append(slot)
            if len(fired) >= 2:
                enough.set()
            return None

        source = TimerSource([interval(0.2)], MemoryLedger(), launch)
        await source.start()
        try:
            await asyncio.wait_for(enough.wait(), 5)
        finally:
            source.stop()

    asyncio.run(main())
    assert fired[1] - fired[0] == timedelta(seconds=0.2)
    assert all(s.tzinfo is not None and s.microsecond % 200000 == 0 for s in fired)


def test_max_instances_bounds_concurrent_runs_of_one_trigger() -> None:
    starts: list[datetime] = []

    async def main() -> None:
        release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        two, three = asyncio.Event(), asyncio.Event()

        async def launch(spec: TimerSpec, slot: datetime) -> Any:
            starts.append(slot)
            if len(starts) >= 2:
                two.set()
            if len(starts) >= 3:
                three.set()
            return release  # the "job" runs until released

        spec = TimerSpec("interval:f", "f", "interval", seconds=0.05, max_instances=2)
        source = TimerSource([spec], MemoryLedger(), launch)
        await source.start()
        try:
            await asyncio.wait_for(two.wait(), 5)
            # Ten more slots come due meanwhile; none may start while two run.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(three.wait()), 0.5)
            release.set_result(None)
            await asyncio.wait_for(three.wait(), 5)
        finally:
            source.stop()

    asyncio.run(main())
