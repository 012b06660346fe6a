"""Counting closed NYSE sessions: weekends, holidays, the 16:00 close and half days."""
import datetime
from zoneinfo import ZoneInfo

import pytest

from financial import freshness
from financial.freshness import nyse_sessions

NEW_YORK = ZoneInfo("America/New_York")


def new_york(*args) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=NEW_YORK)


def behind(last_date: datetime.date, now: datetime.datetime) -> int:
    return nyse_sessions().sessions_behind(last_date, now)


FRIDAY = datetime.date(2023, 3, 24)


@pytest.mark.parametrize("now, sessions", [
    (new_york(2023, 3, 24, 17, 0), 0),    # Friday evening, Friday's day is stored
    (new_york(2023, 3, 26, 12, 0), 0),    # the weekend has no session
    (new_york(2023, 3, 27, 15, 59, 59), 0),  # Monday, before the close
    (new_york(2023, 3, 27, 16, 0), 1),    # Monday's close
    (new_york(2023, 3, 31, 16, 30), 5),   # a week later
])
def test_sessions_behind_counts_closed_sessions_across_a_weekend(now, sessions):
    assert behind(FRIDAY, now) == sessions


@pytest.mark.parametrize("now, sessions", [
    (new_york(2023, 4, 7, 17, 0), 0),     # Good Friday is no session
    (new_york(2023, 4, 10, 9, 30), 0),    # Monday's open: nothing closed yet
    (new_york(2023, 4, 10, 16, 0, 1), 1),
])
def test_good_friday_is_not_a_session(now, sessions):
    assert behind(datetime.date(2023, 4, 6), now) == sessions


def test_the_close_is_16_new_york_time_in_summer_and_winter():
    summer_day, winter_day = datetime.date(2023, 7, 11), datetime.date(2023, 12, 12)
    assert behind(summer_day - datetime.timedelta(days=1),
                  datetime.datetime(2023, 7, 11, 19, 59, tzinfo=datetime.UTC)) == 0
    assert behind(summer_day - datetime.timedelta(days=1),
                  datetime.datetime(2023, 7, 11, 20, 0, tzinfo=datetime.UTC)) == 1
    assert behind(winter_day - datetime.timedelta(days=1),
                  datetime.datetime(2023, 12, 12, 20, 59, tzinfo=datetime.UTC)) == 0
    assert behind(winter_day - datetime.timedelta(days=1),
                  datetime.datetime(2023, 12, 12, 21, 0, tzinfo=datetime.UTC)) == 1


def test_thanksgiving_is_no_session_and_the_day_after_closes_at_13():
    wednesday = datetime.date(2026, 11, 25)
    assert behind(wednesday, new_york(2026, 11, 26, 18, 0)) == 0
    assert behind(wednesday, new_york(2026, 11, 27, 12, 59)) == 0
    assert behind(wednesday, new_york(2026, 11, 27, 13, 0)) == 1


def test_a_day_stored_after_the_newest_close_is_not_behind():
    # A symbol whose newest day is today, fetched before the close (or dated a weekend).
    assert behind(datetime.date(2023, 3, 27), new_york(2023, 3, 27, 11, 0)) == 0
    assert behind(datetime.date(2023, 3, 25), new_york(2023, 3, 27, 15, 0)) == 0
    assert behind(datetime.date(2023, 3, 25), new_york(2023, 3, 27, 16, 0)) == 1


def test_last_closed_is_the_newest_session_that_has_closed():
    sessions = nyse_sessions()
    assert sessions.last_closed(new_york(2023, 4, 10, 12, 0)) == datetime.date(2023, 4, 6)
    assert sessions.last_closed(new_york(2023, 4, 10, 16, 0)) == datetime.date(2023, 4, 10)


def test_the_calendar_is_built_once_and_reaches_a_year_ahead():
    sessions = nyse_sessions()
    assert nyse_sessions() is sessions
    a_year_ahead = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=360)
    assert sessions.last_closed(a_year_ahead) > a_year_ahead.date() - datetime.timedelta(days=7)


def test_the_calendar_built_in_a_later_year_reaches_the_end_of_the_year_after():
    """A process living past New Year builds the calendar again, reaching a year further."""
    year = datetime.date.today().year + 3
    sessions = freshness._build(year)
    new_years_eve = datetime.datetime(year + 1, 12, 31, 23, 0, tzinfo=datetime.UTC)
    assert sessions.last_closed(new_years_eve) > datetime.date(year + 1, 12, 24)


@pytest.mark.parametrize("last_date, now, sessions", [
    # The week of 19 October 1987: the exchange stayed open every day.
    (datetime.date(1987, 10, 16), new_york(1987, 10, 23, 17, 0), 5),
    # Hurricane Gloria closed it on Friday 27 September 1985.
    (datetime.date(1985, 9, 26), new_york(1985, 9, 30, 17, 0), 1),
    # New Year's Day 1970, a Thursday, was no session.
    (datetime.date(1969, 12, 31), new_york(1970, 1, 2, 17, 0), 1),
])
def test_days_from_1970_on_are_counted_by_the_exchange_s_sessions(last_date, now, sessions):
    assert behind(last_date, now) == sessions
