"""The typed shape of a daily price series, whichever AlphaVantage function it came from."""
import datetime
from dataclasses import dataclass
from decimal import Decimal

TIME_SERIES_DAILY = "TIME_SERIES_DAILY"
TIME_SERIES_DAILY_ADJUSTED = "TIME_SERIES_DAILY_ADJUSTED"
FUNCTIONS = (TIME_SERIES_DAILY, TIME_SERIES_DAILY_ADJUSTED)


@dataclass(frozen=True, kw_only=True, slots=True)
class DailyBar:
    """One trading day; prices keep AlphaVantage's digits (``Decimal("170.0000")``).

    The adjusted close, the dividend and the split coefficient come only from
    TIME_SERIES_DAILY_ADJUSTED and are None otherwise. AlphaVantage computes
    the adjusted close with up to 12 decimals; it is rounded half away from
    zero to the 4 the table keeps. Slots: a full history builds tens of
    thousands, and a frozen dataclass sets each field on its own.
    """

    date: datetime.date
    open_price: Decimal
    high_price: Decimal
    low_price: Decimal
    close_price: Decimal
    adjusted_close_price: Decimal | None = None
    volume: int
    dividend_amount: Decimal | None = None
    split_coefficient: Decimal | None = None


@dataclass(frozen=True)
class DailySeries:
    """A symbol's daily bars, newest first (sorted by date, whatever the payload's order).

    ``function`` is the AlphaVantage function the payload came from; the close
    is always the raw ``4. close``, also for ``TIME_SERIES_DAILY_ADJUSTED``.
    """

    symbol: str
    function: str
    bars: tuple[DailyBar, ...]
