"""Scheduler tick arithmetic (gateway.scheduler): interval and cron in Asia/Ho_Chi_Minh."""

from __future__ import annotations

from datetime import datetime

import pytest

from gateway.adapters import ScheduledJob
from gateway.errors import ConfigurationError
from gateway.scheduler import SCHEDULE_TZ, Schedule, due_tick, next_tick, plan_tick


def at(*args: int) -> float:
    return datetime(*args, tzinfo=SCHEDULE_TZ).timestamp()  # type: ignore[misc]


EVERY_MINUTE = ScheduledJob(name="poll", kind="payment.poll", interval_seconds=60)
DAILY_2AM = ScheduledJob(name="reconcile", kind="payment.reconcile", cron="0 2 * * *")


def test_interval_ticks_are_aligned_to_the_epoch() -> None:
    assert due_tick(EVERY_MINUTE, 1_000_000_030.5) == 1_000_000_020.0
    assert due_tick(EVERY_MINUTE, 1_000_000_020.0) == 1_000_000_020.0
    assert next_tick(EVERY_MINUTE, 1_000_000_020.0) == 1_000_000_080.0


def test_cron_ticks_use_vietnam_time() -> None:
    # 02:00 in Ho Chi Minh City is 19:00 UTC the day before
    now = at(2026, 3, 10, 9, 30)
    assert due_tick(DAILY_2AM, now) == at(2026, 3, 10, 2, 0)
    assert next_tick(DAILY_2AM, now) == at(2026, 3, 11, 2, 0)
    assert datetime.fromtimestamp(due_tick(DAILY_2AM, now), SCHEDULE_TZ).hour == 2
    # exactly at the tick, the tick itself is due
    assert due_tick(DAILY_2AM, at(2026, 3, 10, 2, 0)) == at(2026, 3, 10, 2, 0)


def test_first_sight_runs_an_interval_job_at_once_and_a_cron_job_at_its_time() -> None:
    now = at(2026, 3, 10, 9, 30, 15)
    plan = plan_tick(EVERY_MINUTE, None, now)
    assert plan.run == plan.record == at(2026, 3, 10, 9, 30)
    plan = plan_tick(DAILY_2AM, None, now)
    assert plan.run is None
    assert plan.record == at(2026, 3, 10, 2, 0)


def test_a_tick_runs_once_per_period() -> None:
    last = at(2026, 3, 10, 9, 30)
    assert plan_tick(EVERY_MINUTE, last, at(2026, 3, 10, 9, 30, 59)).run is None
    plan = plan_tick(EVERY_MINUTE, last, at(2026, 3, 10, 9, 31, 0))
    assert plan.run == at(2026, 3, 10, 9, 31)


def test_ticks_missed_during_downtime_run_once_not_many_times() -> None:
    # down from 09:30 to 14:07: 277 minute ticks and no 02:00 tick missed
    last = at(2026, 3, 10, 9, 30)
    plan = plan_tick(EVERY_MINUTE, last, at(2026, 3, 10, 14, 7, 30))
    assert plan.run == at(2026, 3, 10, 14, 7)  # one run, for the latest tick
    # down across three 02:00 ticks: one reconciliation
    plan = plan_tick(DAILY_2AM, at(2026, 3, 10, 2, 0), at(2026, 3, 13, 8, 0))
    assert plan.run == at(2026, 3, 13, 2, 0)


def test_a_schedule_needs_exactly_one_of_interval_and_cron() -> None:
    with pytest.raises(ConfigurationError):
        Schedule("x.y", ScheduledJob(name="y", kind="x.y"))
    with pytest.raises(ConfigurationError):
        Schedule("x.y", ScheduledJob(name="y", kind="x.y", interval_seconds=5, cron="* * * * *"))
    with pytest.raises(ConfigurationError):
        Schedule("x.y", ScheduledJob(name="y", kind="x.y", cron="not a cron"))
    with pytest.raises(ConfigurationError):
        Schedule("x.y", ScheduledJob(name="y", kind="x.y", interval_seconds=0))
