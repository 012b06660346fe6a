"""How fresh each stored symbol is: NYSE sessions closed since its last stored day.

The sessions come from exchange_calendars' XNYS calendar (weekends and NYSE
holidays, Good Friday included, are no sessions; half days close at 13:00).
A session counts once it has closed: 16:00 New York time on a full day.
"""
import datetime
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from financial.models import FinancialData
from financial.runs import latest_symbol_outcomes

# exchange_calendars' XNYS keeps New Year's Day and Christmas as sessions before
# 1970; from then on its sessions are the exchange's. A last_date before it
# counts from 1970's first session.
CALENDAR_START = "1970-01-01"


class NyseSessions:
    """The NYSE sessions and their closes (naive UTC), both in session order."""

    def __init__(self, sessions: list[datetime.date], closes: list[datetime.datetime]) -> None:
        self.sessions = sessions
        self.closes = closes

    def closed_count(self, now: datetime.datetime) -> int:
        """Return how many sessions have closed at ``now`` (aware)."""
        return bisect_right(self.closes, now.astimezone(datetime.UTC).replace(tzinfo=None))

    def last_closed(self, now: datetime.datetime) -> datetime.date | None:
        """Return the newest session that has closed at ``now``, or None."""
        closed = self.closed_count(now)
        return self.sessions[closed - 1] if closed else None

    def sessions_behind(self, last_date: datetime.date, now: datetime.datetime) -> int:
        """Return how many sessions after ``last_date`` have closed at ``now``."""
        return max(0, self.closed_count(now) - bisect_right(self.sessions, last_date))


def nyse_sessions() -> NyseSessions:
    """Return the NYSE calendar from 1970 to the end of next year, built once a year per process.

    Building it takes a few tenths of a second; a process that lives past
    New Year rebuilds it then, so the calendar always reaches a year ahead.
    """
    return _build(datetime.date.today().year)


@lru_cache(maxsize=1)
def _build(year: int) -> NyseSessions:
    # Imported here, so only a process that serves freshness pays for it.
    import exchange_calendars

    # The end is named: left out, it is a year after exchange_calendars was imported,
    # and the same calendar is handed back, so a rebuild would reach no further.
    calendar = exchange_calendars.get_calendar("XNYS", start=CALENDAR_START,
                                               end=f"{year + 1}-12-31")
    return NyseSessions([session.date() for session in calendar.sessions],
                        list(calendar.closes.dt.tz_convert(None).dt.to_pydatetime()))


@dataclass(frozen=True)
class SymbolFreshness:
    """One stored symbol: its stored span, how far behind it is, and its newest fetch."""

    symbol: str
    first_date: datetime.date
    last_date: datetime.date
    trading_days: int
    sessions_behind: int
    stale: bool
    last_fetched_at: datetime.datetime | None
    last_fetch_status: str | None


def count_symbols(session: Session) -> int:
    """Return how many distinct symbols are stored."""
    return session.scalar(select(func.count(func.distinct(FinancialData.symbol)))) or 0


def list_symbols(session: Session, *, limit: int, offset: int, now: datetime.datetime,
                 stale_after: int) -> list[SymbolFreshness]:
    """Return ``limit`` stored symbols after ``offset``, ordered by symbol, with freshness.

    ``stale`` is ``sessions_behind > stale_after``; the last fetch is the
    newest run that tried the symbol (its start, naive UTC, and the symbol's outcome).
    """
    spans = session.execute(
        select(FinancialData.symbol, func.min(FinancialData.date), func.max(FinancialData.date),
               func.count())
        .group_by(FinancialData.symbol).order_by(FinancialData.symbol)
        .limit(limit).offset(offset)).all()
    fetches = latest_symbol_outcomes(session, [symbol for symbol, *_ in spans])
    calendar = nyse_sessions()
    entries = []
    for symbol, first_date, last_date, trading_days in spans:
        behind = calendar.sessions_behind(last_date, now)
        fetch = fetches.get(symbol)
        entries.append(SymbolFreshness(
            symbol=symbol, first_date=first_date, last_date=last_date,
            trading_days=trading_days, sessions_behind=behind, stale=behind > stale_after,
            last_fetched_at=fetch.started_at if fetch else None,
            last_fetch_status=fetch.status if fetch else None))
    return entries
