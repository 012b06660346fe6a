"""When the fetch job runs by itself: a 5-field cron expression in a time zone, and its loop.

croniter reads the expression; this module only decides when to wake up,
catches up a missed or cut-short run on start, and keeps going when one run fails.
The clocks (wall and elapsed) and the sleep are injected, so tests drive time themselves.
"""
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # loaded when a schedule is read: a run by hand has none
    from croniter import croniter

logger = logging.getLogger(__name__)

# The longest single sleep: a stop request or a clock change is noticed within it.
NAP_SECONDS = 1.0
# As in cron: the clock set back by more than this is a wrong clock put right,
# and the schedule follows it; set back by less, a time already run is not run again.
# A step is the wall clock's move less the real time that passed (time.monotonic).
CLOCK_CORRECTION = datetime.timedelta(hours=3)


class ScheduleError(ValueError):
    """The cron expression or the time zone cannot be used; the message says which."""


def utc_clock() -> datetime.datetime:
    """Return the current time, aware, in UTC."""
    return datetime.datetime.now(datetime.UTC)


def parse_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone ``name``; raise ScheduleError if there is none such."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}; use an IANA name such as "
                            "America/New_York") from None


@dataclass(frozen=True)
class Schedule:
    """A 5-field cron expression read in a time zone (daylight saving included)."""

    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, zone: ZoneInfo) -> "Schedule":
        """Check the expression and build the schedule.

        Raises ScheduleError when it has not 5 fields, a field is out of
        range, or it never matches (``0 0 30 2 *``).
        """
        expression = " ".join(expression.split())
        if len(expression.split()) != 5:
            raise ScheduleError(f"the cron expression {expression!r} must have 5 fields: "
                                "minute hour day-of-month month day-of-week")
        from croniter.croniter import CroniterBadDateError, CroniterError

        schedule = cls(expression, zone)
        try:
            schedule.next_after(utc_clock())
        except CroniterBadDateError:  # croniter says "failed to find next date"
            raise ScheduleError(f"the cron expression {expression!r} cannot be used: it never "
                                "matches a date") from None
        except (CroniterError, ValueError) as exc:
            raise ScheduleError(f"the cron expression {expression!r} cannot be used: "
                                f"{exc}") from None
        return schedule

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        """Return the first scheduled time strictly after ``moment`` (aware, in the zone)."""
        times = self._times_from(moment)
        return self._once_per_wall_time(lambda: times.get_next(datetime.datetime))

    def last_before(self, moment: datetime.datetime) -> datetime.datetime:
        """Return the last scheduled time strictly before ``moment`` (aware, in the zone)."""
        times = self._times_from(moment)
        return self._once_per_wall_time(lambda: times.get_prev(datetime.datetime))

    def _times_from(self, moment: datetime.datetime) -> "croniter":
        from croniter import croniter

        # Cron runs a day that matches either day field only when both are
        # restricted, and a field starting with "*" (``*/2``) is not: then
        # the day must match both. croniter applies that rule only when asked.
        return croniter(self.expression, moment.astimezone(self.zone), implement_cron_bug=True)

    def _once_per_wall_time(self, step: Callable[[], datetime.datetime]) -> datetime.datetime:
        """Step through scheduled times, passing over a fixed time the clock shows again.

        When daylight saving ends, the clock goes back an hour and shows its
        times again: a schedule of 01:30 would run twice that night. As cron
        does, a time of fixed minute and hour runs once, at its first
        occurrence; a schedule whose minute or hour is a wildcard (``*/30``,
        ``0 *``) runs at every time of the repeated hour, as the clock shows it.
        """
        moment = step()
        minute, hour = self.expression.split()[:2]
        if minute.startswith("*") or hour.startswith("*"):
            return moment
        while moment.replace(fold=0).utcoffset() != moment.utcoffset():  # a second showing
            moment = step()
        return moment

    def describe(self) -> str:
        return f"{self.expression!r} in {self.zone.key}"


def missed_run(schedule: Schedule, now: datetime.datetime,
               last_start: datetime.datetime | None) -> datetime.datetime | None:
    """Return the last scheduled time if no run started at or after it, else None.

    ``last_start`` is the newest run's start in naive UTC, as the history stores it.
    """
    due = schedule.last_before(now)
    if last_start is not None and last_start.replace(tzinfo=datetime.UTC) >= due:
        return None
    return due


class RunHistory(Protocol):
    """What the scheduler reads of the run history: the reasons for the catch-up on start.

    A read that raises makes the scheduler catch up anyway.
    """

    def last_start(self) -> datetime.datetime | None:
        """Return the newest run's start in naive UTC, as the history stores it; None if none."""

    def cut_short(self, since: datetime.datetime) -> bool:
        """Tell whether the newest scheduled run started at or after ``since`` was cut short."""


class Scheduler:
    """Runs the job at each scheduled time until asked to stop.

    ``run_job`` runs and records one job, given the scheduled time it is for
    (another scheduler may have done it) and whether it is the catch-up on
    start (which fetches only what no run since that time did); its failure
    (an exception or a failed run) is logged and the schedule goes on.
    ``history`` tells whether the last scheduled time needs that catch-up.
    """

    def __init__(self, schedule: Schedule,
                 run_job: Callable[[datetime.datetime, bool], object],
                 history: RunHistory, *,
                 should_stop: Callable[[], bool],
                 clock: Callable[[], datetime.datetime] = utc_clock,
                 elapsed: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.schedule = schedule
        self.run_job = run_job
        self.history = history
        self.should_stop = should_stop
        self.clock = clock
        self.elapsed = elapsed
        self.sleep = sleep
        # The wall clock and the elapsed seconds when last read, to tell a step of the clock.
        self._last_reading: tuple[datetime.datetime, float] | None = None

    def serve(self) -> None:
        """Catch up a missed run, then run at each scheduled time; return once stopped.

        Times are the wall clock's. Set forward past scheduled times (a machine
        waking from sleep), it runs once for them all; set back, see
        CLOCK_CORRECTION.
        """
        logger.info("scheduler started: %s", self.schedule.describe())
        self._read_clock()  # a step from here on, the catch-up run included, is seen
        missed = self._catch_up()
        # The scheduled times up to here are run or skipped; a clock set back a
        # little during the catch-up must not bring the missed time round again
        # (set back further, the first nap sees the step and the schedule follows it).
        done = self.clock() if missed is None else max(self.clock(), missed)
        while not self.should_stop():
            due = self.schedule.next_after(done)
            logger.info("next run at %s", due.isoformat())
            woke = self._sleep_until(due)
            if woke is None:
                break
            if woke < due:
                logger.warning("the clock went back to %s; the schedule follows it",
                               woke.astimezone(self.schedule.zone).isoformat())
                done = woke
                continue
            self._run("scheduled run of %s", due)
            # A clock set back a little during the run must not bring ``due`` round
            # again; set back further, the next nap sees the step.
            done = max(self.clock(), due)
        logger.info("scheduler stopped")

    def _catch_up(self) -> datetime.datetime | None:
        """Run once if the last scheduled time had no run, or its run was cut short.

        Return that time if it ran.
        """
        what = "catch-up run: no run since %s"
        try:
            now = self.clock()
            missed = missed_run(self.schedule, now, self.history.last_start())
            due = self.schedule.last_before(now)
            if missed is None and self.history.cut_short(due):
                what = "catch-up run: the run of %s was cut short; fetching what it did not"
                missed = due
        except Exception as exc:  # the history is unreadable: running is the safer guess
            logger.warning("could not read the run history (%s); catching up anyway",
                           exc.__class__.__name__)
            missed = self.schedule.last_before(self.clock())
        if missed is None or self.should_stop():
            return None
        self._run(what, missed, catch_up=True)
        return missed

    def _run(self, what: str, due: datetime.datetime, *, catch_up: bool = False) -> None:
        logger.info(what, due.isoformat())
        try:
            self.run_job(due, catch_up)
        except Exception:  # one failed run must not end the schedule
            logger.exception("the run failed; the schedule goes on")

    def _sleep_until(self, due: datetime.datetime) -> datetime.datetime | None:
        """Sleep in short naps until ``due``; return the time woken, None if asked to stop first.

        Wakes before ``due`` when the clock went back more than CLOCK_CORRECTION
        since it was last read: during a nap, or during the run before.
        """
        while not self.should_stop():
            now, step = self._read_clock()
            if now >= due or step < -CLOCK_CORRECTION:
                return now
            self.sleep(min((due - now).total_seconds(), NAP_SECONDS))
        return None

    def _read_clock(self) -> tuple[datetime.datetime, datetime.timedelta]:
        """Return the wall clock's time and how far it was stepped since the last reading.

        The step is the wall clock's move less the real time that passed, so
        neither a long run nor daylight saving (the clock is read in UTC) counts.
        """
        now, elapsed = self.clock().astimezone(datetime.UTC), self.elapsed()
        last_now, last_elapsed = self._last_reading or (now, elapsed)
        self._last_reading = now, elapsed
        return now, (now - last_now) - datetime.timedelta(seconds=elapsed - last_elapsed)
