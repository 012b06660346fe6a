"""Statistics over stored prices: exact averages from SQL sums, and the monthly sums behind them."""
import datetime
import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import cast

from sqlalchemy import (
    Table, and_, bindparam, delete, extract, func, insert, or_, select, true, union_all,
)
from sqlalchemy.orm import Session

from financial.errors import NoDataError
from financial.models import FinancialData, MonthlyPriceSums
from financial.months import last_day_of_month, month_index, month_number, split_range

PRICE_PLACES = Decimal("0.01")
WHOLE = Decimal("1")
# Sums of DECIMAL(18,4) over any realistic row count fit easily in 60 digits.
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


def refresh_monthly_sums(session: Session, symbol: str | None = None,
                         first_day: datetime.date | None = None,
                         last_day: datetime.date | None = None) -> None:
    """Recompute the monthly sums of the months from ``first_day``'s to ``last_day``'s.

    For ``symbol`` only, or every symbol when None; every month when a day
    is None. Whoever changes ``financial_data`` calls it for the span it
    changed, in the same transaction (flushes, never commits).
    """
    params: dict = {}
    if symbol is not None:
        params["symbol"] = symbol
    if first_day is not None:
        params["first_month"] = month_number(month_index(first_day))
        params["first_day"] = first_day.replace(day=1)
    if last_day is not None:
        params["last_month"] = month_number(month_index(last_day))
        params["last_day"] = last_day_of_month(last_day)
    session.flush()
    # Through the session's connection, the statements built once: the fetch
    # job refreshes each symbol's months as it stores them, and building and
    # running them through the ORM took as long as the database's work.
    connection = session.connection()
    for statement in _refresh_statements(symbol is not None, first_day is not None,
                                         last_day is not None):
        connection.execute(statement, params)


@functools.lru_cache(maxsize=8)
def _refresh_statements(by_symbol: bool, from_first: bool, to_last: bool) -> tuple:
    """Build the delete and insert of ``refresh_monthly_sums`` for the bounds it is given."""
    sums_table = cast(Table, MonthlyPriceSums.__table__)
    sums, days = sums_table.c, cast(Table, FinancialData.__table__).c
    month = extract("year", days.date) * 100 + extract("month", days.date)
    kept, counted = [], []
    if by_symbol:
        kept.append(sums.symbol == bindparam("symbol"))
        counted.append(days.symbol == bindparam("symbol"))
    if from_first:
        kept.append(sums.month >= bindparam("first_month"))
        counted.append(days.date >= bindparam("first_day"))
    if to_last:
        kept.append(sums.month <= bindparam("last_month"))
        counted.append(days.date <= bindparam("last_day"))
    return (delete(sums_table).where(and_(true(), *kept)),
            insert(sums_table).from_select(
                ["symbol", "month", "days", "open_sum", "close_sum", "volume_sum"],
                select(days.symbol, month, func.count(), func.sum(days.open_price),
                       func.sum(days.close_price), func.sum(days.volume))
                .where(and_(true(), *counted)).group_by(days.symbol, month)))
