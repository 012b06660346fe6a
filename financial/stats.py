"""Statistics over stored prices: exact averages from SQL sums of days and of whole months."""
import datetime
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from sqlalchemy import bindparam, func, or_, select, union_all
from sqlalchemy.orm import Session

from financial.errors import NoDataError
from financial.models import FinancialData, MonthlyPriceSums
from financial.months import split_range

PRICE_PLACES = Decimal("0.01")
WHOLE = Decimal("1")
# Sums of stored prices (4 places, below 10**9) over any row count fit easily in 60 digits.
AVERAGE_PRECISION = 60


@dataclass(frozen=True)
class PriceStatistics:
    """Averages over the stored trading days of a range, already rounded."""

    average_daily_open_price: Decimal
    average_daily_close_price: Decimal
    average_daily_volume: int


def _range_sums():
    """Build the one statement behind every statistics query (compiled once, then cached).

    Two rows, which ``compute_statistics`` adds up: the whole months of the
    range from ``monthly_price_sums``, and the days of the partial months at
    either end from ``financial_data``. A range without a whole month reads
    its days as the head and an empty tail. Adding the rows in SQL instead,
    over the union as a derived table, has MariaDB materialize them (about
    240) in a temporary table first.
    """
    sums, days = MonthlyPriceSums, FinancialData
    months = select(func.sum(sums.days), func.sum(sums.open_sum), func.sum(sums.close_sum),
                    func.sum(sums.volume_sum)).where(
        sums.symbol == bindparam("symbol"),
        sums.month.between(bindparam("first_month"), bindparam("last_month")))
    edges = select(func.count(), func.sum(days.open_price), func.sum(days.close_price),
                   func.sum(days.volume)).where(
        days.symbol == bindparam("symbol"),
        or_(days.date.between(bindparam("head_start"), bindparam("head_end")),
            days.date.between(bindparam("tail_start"), bindparam("tail_end"))))
    return union_all(months, edges)


_RANGE_SUMS = _range_sums()


def compute_statistics(
    session: Session, symbol: str, start_date: datetime.date, end_date: datetime.date
) -> PriceStatistics:
    """Average open, close and volume of ``symbol`` over the inclusive range.

    SQL returns exact sums and the row count; the division happens here in
    decimal arithmetic, because SQL AVG is a float on SQLite and truncated
    to a few decimals on MySQL, either of which can flip a rounding at .xx5.
    Raises NoDataError when no day in the range is stored.
    """
    # Through the session's connection: the rows are plain values, which the
    # ORM's execution and result handling would only slow down.
    parts = session.connection().execute(
        _RANGE_SUMS, {"symbol": symbol, **_split_range(start_date, end_date)}).all()
    days, open_sum, close_sum, volume_sum = (
        sum(value or 0 for value in column) for column in zip(*parts))
    if not days:
        raise NoDataError(
            f"no data for symbol {symbol} between {start_date.isoformat()} "
            f"and {end_date.isoformat()}"
        )
    return PriceStatistics(
        average_daily_open_price=_average(open_sum, days, PRICE_PLACES),
        average_daily_close_price=_average(close_sum, days, PRICE_PLACES),
        average_daily_volume=int(_average(volume_sum, days, WHOLE)),
    )


def _split_range(start: datetime.date, end: datetime.date) -> dict:
    """Return the statement's parameters: the whole months of [start, end], the days around them."""
    parts = split_range(start, end)
    head, tail = parts.head or _EMPTY, parts.tail or _EMPTY
    return {"first_month": parts.first_month, "last_month": parts.last_month,
            "head_start": head[0], "head_end": head[1], "tail_start": tail[0], "tail_end": tail[1]}


# A date range no day falls in; month arithmetic below never leaves the date type's range.
_EMPTY = (datetime.date.max, datetime.date.min)


def _average(total, count: int, places: Decimal) -> Decimal:
    """Return total / count rounded half away from zero to ``places``."""
    with localcontext() as context:
        context.prec = AVERAGE_PRECISION
        return (Decimal(total) / count).quantize(places, rounding=ROUND_HALF_UP)
