"""The scheduler's clock work: cron times in a time zone, catch-up, failures, stopping.

Time is a fake clock the tests move; the scheduler's naps advance it.
"""
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from financial.schedule import Schedule, ScheduleError, Scheduler, missed_run, parse_zone

NEW_YORK = ZoneInfo("America/New_York")
UTC = datetime.UTC
UTC_ZONE = ZoneInfo("UTC")
WEEKDAYS_AFTER_CLOSE = "30 18 * * 1-5"


def new_york(*args) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=NEW_YORK)


class FakeClock:
    """A wall clock, and the real seconds elapsed, that move only when the test says so.

    The code under test moves both by sleeping; a step moves the wall clock alone.
    """

    def __init__(self, start: datetime.datetime) -> None:
        self.now = start.astimezone(UTC)
        self.elapsed = 0.0
        self.naps = 0
        self.step: tuple[datetime.datetime, datetime.datetime] | None = None

    def __call__(self) -> datetime.datetime:
        return self.now

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.naps += 1
        self.pass_time(datetime.timedelta(seconds=seconds))
        if self.step is not None and self.now >= self.step[0]:
            self.now, self.step = self.step[1], None

    def pass_time(self, duration: datetime.timedelta) -> None:
        self.now += duration
        self.elapsed += duration.total_seconds()

    def set_at(self, moment: datetime.datetime, shows: datetime.datetime) -> None:
        """Once the clock reaches ``moment`` during a nap, make it show ``shows`` (a step)."""
        self.step = (moment.astimezone(UTC), shows.astimezone(UTC))


class FakeJob:
    """Records when it ran (as the history would), for which time and whether as the catch-up,
    and fails when told to."""

    def __init__(self, clock: FakeClock, failures: int = 0) -> None:
        self.clock = clock
        self.failures = failures
        self.runs: list[datetime.datetime] = []
        self.scheduled_for: list[datetime.datetime] = []
        self.catch_ups: list[bool] = []

    def __call__(self, due: datetime.datetime, catch_up: bool) -> None:
        self.scheduled_for.append(due)
        self.catch_ups.append(catch_up)
        self.runs.append(self.clock())
        if len(self.runs) <= self.failures:
            raise RuntimeError("AlphaVantage is down")

    def last_start(self) -> datetime.datetime | None:
        """The newest start, as the history stores it: naive UTC."""
        return self.runs[-1].replace(tzinfo=None) if self.runs else None


def never_cut_short(_due: datetime.datetime) -> bool:
    return False


@dataclass
class FakeHistory:
    """The run history's answers, from the functions a test gives."""

    last_start: Callable[[], datetime.datetime | None]
    cut_short: Callable[[datetime.datetime], bool] = never_cut_short


def serve(start, *, runs: int, history_start=None, failures=0,
          expression=WEEKDAYS_AFTER_CLOSE, clock=None, job=None,
          cut_short=never_cut_short) -> FakeJob:
    """Run the scheduler from ``start`` until the job ran ``runs`` times."""
    clock = clock or FakeClock(start)
    job = job or FakeJob(clock, failures)
    Scheduler(Schedule.parse(expression, NEW_YORK), job,
              FakeHistory(lambda: job.last_start() or history_start, cut_short),
              should_stop=lambda: len(job.runs) >= runs, clock=clock, elapsed=clock.monotonic,
              sleep=clock.sleep).serve()
    return job


def test_runs_at_the_cron_times_in_new_york_across_a_weekend_and_daylight_saving():
    # Friday noon; the history has Thursday's scheduled run, so nothing to catch up.
    thursday_run = new_york(2026, 3, 5, 18, 30, 4).astimezone(UTC).replace(tzinfo=None)
    job = serve(new_york(2026, 3, 6, 12, 0), runs=3, history_start=thursday_run)
    # Clocks go forward on Sunday 2026-03-08: Friday is EST (23:30Z), Monday EDT (22:30Z).
    assert job.runs == [new_york(2026, 3, 6, 18, 30), new_york(2026, 3, 9, 18, 30),
                        new_york(2026, 3, 10, 18, 30)]
    assert [run.astimezone(UTC).hour for run in job.runs] == [23, 22, 22]


def test_a_wall_time_the_clock_shows_twice_runs_once():
    # Clocks go back on Sunday 2026-11-01 at 02:00 EDT: 01:30 happens at 05:30Z and 06:30Z.
    saturday_run = new_york(2026, 10, 31, 1, 30, 4).astimezone(UTC).replace(tzinfo=None)
    job = serve(new_york(2026, 10, 31, 12, 0), runs=2, history_start=saturday_run,
                expression="30 1 * * *")
    assert [run.astimezone(UTC) for run in job.runs] == [
        datetime.datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime.datetime(2026, 11, 2, 6, 30, tzinfo=UTC)]
    schedule = Schedule.parse("30 1 * * *", NEW_YORK)
    after_both = datetime.datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    assert schedule.last_before(after_both).astimezone(UTC) == job.runs[0].astimezone(UTC)
    assert missed_run(schedule, after_both, job.runs[0].replace(tzinfo=None)) is None


@pytest.mark.parametrize("expression, expected", [
    ("*/30 * * * *", ["05:00", "05:30", "06:00", "06:30", "07:00"]),
    ("15 * * * *", ["05:15", "06:15", "07:15", "08:15", "09:15"]),
    ("*/30 1 * * *", ["05:00", "05:30", "06:00", "06:30", "1 06:00"]),
    ("15 1,3 * * *", ["05:15", "08:15", "1 06:15", "1 08:15"]),  # fixed: 01:15 once
])
def test_a_wildcard_schedule_runs_at_every_time_the_clock_shows(expression, expected):
    """Cron's rule: only a fixed minute and hour run once in the repeated hour."""
    schedule = Schedule.parse(expression, NEW_YORK)
    moment, times = datetime.datetime(2026, 11, 1, 4, 50, tzinfo=UTC), []
    for _ in expected:
        moment = schedule.next_after(moment)
        utc = moment.astimezone(UTC)
        times.append(utc.strftime("%H:%M") if utc.day == 1 else f"{utc.day - 1} {utc:%H:%M}")
    assert times == expected


def test_logs_the_next_run_time(caplog):
    caplog.set_level(logging.INFO, logger="financial.schedule")
    thursday_run = datetime.datetime(2026, 3, 5, 23, 31)
    serve(new_york(2026, 3, 6, 12, 0), runs=1, history_start=thursday_run)
    assert caplog.messages == [
        "scheduler started: '30 18 * * 1-5' in America/New_York",
        "next run at 2026-03-06T18:30:00-05:00",
        "scheduled run of 2026-03-06T18:30:00-05:00",
        "scheduler stopped",
    ]


def test_an_unreadable_history_is_caught_up_anyway(caplog):
    """Running once too many is the safer guess than missing a run."""
    caplog.set_level(logging.INFO, logger="financial.schedule")
    clock = FakeClock(new_york(2026, 3, 3, 9, 0))
    job = FakeJob(clock)

    def unreadable_history() -> datetime.datetime | None:
        raise OSError("the database is unreachable")

    Scheduler(Schedule.parse(WEEKDAYS_AFTER_CLOSE, NEW_YORK), job,
              FakeHistory(unreadable_history), should_stop=lambda: len(job.runs) >= 1, clock=clock,
              elapsed=clock.monotonic, sleep=clock.sleep).serve()
    assert job.runs == [new_york(2026, 3, 3, 9, 0)]
    assert caplog.messages == [
        "scheduler started: '30 18 * * 1-5' in America/New_York",
        "could not read the run history (OSError); catching up anyway",
        "catch-up run: no run since 2026-03-02T18:30:00-05:00",
        "scheduler stopped",
    ]


def test_a_missed_run_is_caught_up_once_at_start():
    # Tuesday 09:00; the newest run started Monday morning, before Monday's 18:30.
    monday_morning = datetime.datetime(2026, 3, 2, 15, 0)
    job = serve(new_york(2026, 3, 3, 9, 0), runs=3, history_start=monday_morning)
    assert job.runs == [new_york(2026, 3, 3, 9, 0), new_york(2026, 3, 3, 18, 30),
                        new_york(2026, 3, 4, 18, 30)]
    # Each run is for a scheduled time: the catch-up for the one it missed, Monday's 18:30,
    # so a second scheduler's run for the same time is told it was done.
    assert job.scheduled_for == [new_york(2026, 3, 2, 18, 30), new_york(2026, 3, 3, 18, 30),
                                 new_york(2026, 3, 4, 18, 30)]
    assert job.catch_ups == [True, False, False]


def test_a_run_cut_short_since_the_last_scheduled_time_is_caught_up_once_at_start(caplog):
    """Monday's 18:30 run started but was stopped or killed: Tuesday 09:00 it is finished."""
    caplog.set_level(logging.INFO, logger="financial.schedule")
    asked = []

    def cut_short(due: datetime.datetime) -> bool:
        asked.append(due)
        return True

    monday_run = datetime.datetime(2026, 3, 2, 23, 30, 4)
    job = serve(new_york(2026, 3, 3, 9, 0), runs=2, history_start=monday_run,
                cut_short=cut_short)
    assert asked == [new_york(2026, 3, 2, 18, 30)]
    assert job.runs == [new_york(2026, 3, 3, 9, 0), new_york(2026, 3, 3, 18, 30)]
    assert job.scheduled_for == [new_york(2026, 3, 2, 18, 30), new_york(2026, 3, 3, 18, 30)]
    assert job.catch_ups == [True, False]
    assert ("catch-up run: the run of 2026-03-02T18:30:00-05:00 was cut short; fetching what "
            "it did not") in caplog.messages


def test_a_run_that_ended_since_the_last_scheduled_time_leaves_nothing_to_catch_up():
    monday_run = datetime.datetime(2026, 3, 2, 23, 30, 4)
    job = serve(new_york(2026, 3, 3, 9, 0), runs=1, history_start=monday_run)
    assert (job.runs, job.catch_ups) == ([new_york(2026, 3, 3, 18, 30)], [False])


def test_a_cut_short_run_that_cannot_be_read_is_caught_up_anyway(caplog):
    def unreadable(_due: datetime.datetime) -> bool:
        raise OSError("the database is unreachable")

    monday_run = datetime.datetime(2026, 3, 2, 23, 30, 4)
    job = serve(new_york(2026, 3, 3, 9, 0), runs=1, history_start=monday_run,
                cut_short=unreadable)
    assert (job.runs, job.catch_ups) == ([new_york(2026, 3, 3, 9, 0)], [True])
    assert "could not read the run history (OSError); catching up anyway" in caplog.messages


def test_an_empty_history_is_caught_up():
    job = serve(new_york(2026, 3, 3, 9, 0), runs=1)
    assert job.runs == [new_york(2026, 3, 3, 9, 0)]


def test_a_failing_run_does_not_stop_the_schedule(caplog):
    thursday_run = datetime.datetime(2026, 3, 5, 23, 31)
    job = serve(new_york(2026, 3, 6, 12, 0), runs=2, history_start=thursday_run, failures=1)
    assert job.runs == [new_york(2026, 3, 6, 18, 30), new_york(2026, 3, 9, 18, 30)]
    failed = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in failed] == ["the run failed; the schedule goes on"]
    assert "AlphaVantage is down" in caplog.text


def test_a_stop_request_ends_the_wait_without_running(caplog):
    caplog.set_level(logging.INFO, logger="financial.schedule")
    clock = FakeClock(new_york(2026, 3, 6, 12, 0))
    ran = []
    Scheduler(Schedule.parse(WEEKDAYS_AFTER_CLOSE, NEW_YORK),
              lambda _due, _catch_up: ran.append(clock()),
              FakeHistory(lambda: datetime.datetime(2026, 3, 5, 23, 31)),
              should_stop=lambda: clock.naps >= 10, clock=clock, elapsed=clock.monotonic,
              sleep=clock.sleep).serve()
    assert ran == [] and clock.now == new_york(2026, 3, 6, 12, 0, 10)
    assert caplog.messages[-1] == "scheduler stopped"


THURSDAY_RUN = datetime.datetime(2026, 3, 5, 23, 31)


class SettingBackJob(FakeJob):
    """A first run that lasts ``lasts``, during which the clock is set back by ``by``."""

    def __init__(self, clock: FakeClock, by: datetime.timedelta,
                 lasts: datetime.timedelta = datetime.timedelta(minutes=1)) -> None:
        super().__init__(clock)
        self.by = by
        self.lasts = lasts

    def __call__(self, due: datetime.datetime, catch_up: bool) -> None:
        super().__call__(due, catch_up)
        if len(self.runs) == 1:
            self.clock.pass_time(self.lasts)
            self.clock.now -= self.by


def test_a_clock_set_back_during_a_run_does_not_run_that_time_again():
    clock = FakeClock(new_york(2026, 3, 6, 12, 0))
    job = SettingBackJob(clock, datetime.timedelta(minutes=10))
    serve(None, runs=2, history_start=THURSDAY_RUN, clock=clock, job=job)
    assert job.runs == [new_york(2026, 3, 6, 18, 30), new_york(2026, 3, 9, 18, 30)]


def test_a_clock_set_back_during_a_catch_up_run_does_not_run_that_time_again():
    clock = FakeClock(new_york(2026, 3, 3, 19, 0))
    job = SettingBackJob(clock, datetime.timedelta(hours=1))
    serve(None, runs=2, history_start=datetime.datetime(2026, 3, 2, 15, 0), clock=clock, job=job)
    assert job.runs == [new_york(2026, 3, 3, 19, 0), new_york(2026, 3, 4, 18, 30)]


def test_a_clock_set_back_less_than_the_correction_on_a_daylight_saving_day_is_not_followed():
    """3 hours are measured in real time, not on the wall clock that skipped 02:00-03:00."""
    clock = FakeClock(new_york(2026, 3, 8, 3, 0))  # 03:00 EDT, a minute after 01:59 EST
    job = SettingBackJob(clock, datetime.timedelta(hours=2, minutes=31))  # to 00:00 EST
    serve(None, runs=2, history_start=datetime.datetime(2026, 3, 8, 6, 30), clock=clock,
          job=job, expression="30 * * * *")
    assert job.runs == [new_york(2026, 3, 8, 3, 30), new_york(2026, 3, 8, 4, 30)]


def test_a_clock_set_far_back_during_a_run_is_followed():
    """A step back of more than CLOCK_CORRECTION is a wrong clock put right."""
    clock = FakeClock(new_york(2026, 3, 6, 12, 0))
    job = SettingBackJob(clock, datetime.timedelta(days=1))
    serve(None, runs=2, history_start=THURSDAY_RUN, clock=clock, job=job)
    assert job.runs == [new_york(2026, 3, 6, 18, 30), new_york(2026, 3, 6, 18, 30)]


def test_a_clock_set_back_more_than_the_correction_during_a_long_run_is_followed(caplog):
    """The step is measured in real time: the run's own hour does not count against it.

    The clock was 3.5 hours fast: Friday's 18:30 run really ran at 15:00, before
    the close. Set right, it shows 16:00 after the run, and 18:30 runs again.
    """
    clock = FakeClock(new_york(2026, 3, 6, 12, 0))
    job = SettingBackJob(clock, datetime.timedelta(hours=3, minutes=30),
                         lasts=datetime.timedelta(hours=1))
    serve(None, runs=2, history_start=THURSDAY_RUN, clock=clock, job=job)
    assert job.runs == [new_york(2026, 3, 6, 18, 30), new_york(2026, 3, 6, 18, 30)]
    assert ("the clock went back to 2026-03-06T16:00:00-05:00; the schedule follows it"
            in caplog.messages)


def test_a_clock_set_back_more_than_the_correction_during_a_catch_up_run_is_followed():
    """Tuesday's catch-up at 19:00 really ran at 15:30: 18:30 is still to come."""
    clock = FakeClock(new_york(2026, 3, 3, 19, 0))
    job = SettingBackJob(clock, datetime.timedelta(hours=3, minutes=30),
                         lasts=datetime.timedelta(hours=1))
    serve(None, runs=2, history_start=datetime.datetime(2026, 3, 2, 15, 0), clock=clock, job=job)
    assert job.runs == [new_york(2026, 3, 3, 19, 0), new_york(2026, 3, 3, 18, 30)]


def test_a_clock_put_right_while_waiting_keeps_the_schedule_of_the_right_time(caplog):
    """A clock two days ahead, set right: the next run is the right day's, not in three days."""
    clock = FakeClock(new_york(2026, 3, 5, 12, 0))
    clock.set_at(new_york(2026, 3, 5, 19, 0), shows=new_york(2026, 3, 3, 19, 0))
    job = serve(None, runs=3, history_start=datetime.datetime(2026, 3, 4, 23, 31), clock=clock)
    assert job.runs == [new_york(2026, 3, 5, 18, 30), new_york(2026, 3, 4, 18, 30),
                        new_york(2026, 3, 5, 18, 30)]
    assert ("the clock went back to 2026-03-03T19:00:00-05:00; the schedule follows it"
            in caplog.messages)


def test_a_clock_set_back_an_hour_while_waiting_still_runs_at_the_time_of_day():
    clock = FakeClock(new_york(2026, 3, 6, 12, 0))
    clock.set_at(new_york(2026, 3, 6, 14, 0), shows=new_york(2026, 3, 6, 13, 0))
    job = serve(None, runs=1, history_start=THURSDAY_RUN, clock=clock)
    assert job.runs == [new_york(2026, 3, 6, 18, 30)]


def test_a_clock_jumping_days_ahead_runs_once_for_the_times_it_skipped():
    """A machine waking from sleep on Thursday: one run, not Monday's to Wednesday's each."""
    clock = FakeClock(new_york(2026, 3, 2, 12, 0))
    clock.set_at(new_york(2026, 3, 2, 13, 0), shows=new_york(2026, 3, 5, 9, 0))
    job = serve(None, runs=2, history_start=datetime.datetime(2026, 2, 27, 23, 31), clock=clock)
    assert job.runs == [new_york(2026, 3, 5, 9, 0), new_york(2026, 3, 5, 18, 30)]


@pytest.mark.parametrize("last_start, missed", [
    (None, new_york(2026, 3, 2, 18, 30)),
    (datetime.datetime(2026, 3, 2, 23, 29, 59), new_york(2026, 3, 2, 18, 30)),
    (datetime.datetime(2026, 3, 2, 23, 30), None),
    (datetime.datetime(2026, 3, 3, 12, 0), None),
])
def test_missed_run_is_the_last_scheduled_time_with_no_run_started_since(last_start, missed):
    schedule = Schedule.parse(WEEKDAYS_AFTER_CLOSE, NEW_YORK)
    assert missed_run(schedule, new_york(2026, 3, 3, 9, 0), last_start) == missed


@pytest.mark.parametrize("expression, expected", [
    # Both day fields restricted: either one matching is enough (the 1st, the 15th, Mondays).
    ("0 12 1,15 * 1", [(1, 1), (1, 5), (1, 12), (1, 15), (1, 19), (1, 26), (2, 1)]),
    # A day field starting with "*" is not restricted: the day must match both,
    # here an odd day of the month that is a Monday.
    ("0 12 */2 * 1", [(1, 5), (1, 19), (2, 9), (2, 23), (3, 9), (3, 23), (4, 13)]),
    # The 1st of the month, when a Sunday, Tuesday, Thursday or Saturday.
    ("0 12 1 * */2", [(1, 1), (2, 1), (3, 1), (8, 1), (9, 1), (10, 1), (11, 1)]),
])
def test_the_day_fields_combine_as_in_cron(expression, expected):
    schedule = Schedule.parse(expression, UTC_ZONE)
    moment, days = datetime.datetime(2026, 1, 1, tzinfo=UTC), []
    for _ in expected:
        moment = schedule.next_after(moment)
        days.append((moment.month, moment.day))
    assert days == expected


FIVE_FIELDS = "must have 5 fields: minute hour day-of-month month day-of-week$"


@pytest.mark.parametrize("expression, problem", [
    ("30 18 * *", FIVE_FIELDS),
    ("0 30 18 * * 1-5", FIVE_FIELDS),
    ("@daily", FIVE_FIELDS),
    ("61 18 * * *", "cannot be used"),
    ("30 18 * * mon-xyz", "cannot be used"),
    ("0 0 30 2 *", "cannot be used: it never matches a date$"),
    ("0 0 31 4 *", "cannot be used: it never matches a date$"),
])
def test_a_bad_cron_expression_is_refused_with_a_reason(expression, problem):
    with pytest.raises(ScheduleError, match=problem):
        Schedule.parse(expression, NEW_YORK)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../etc/passwd", "EST5EDT,M3"])
def test_an_unknown_time_zone_is_refused(name):
    with pytest.raises(ScheduleError) as raised:
        parse_zone(name)
    assert str(raised.value) == (
        f"unknown time zone {name!r}; use an IANA name such as America/New_York")
