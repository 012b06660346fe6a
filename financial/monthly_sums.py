"""The monthly sums behind statistics and counts: kept equal to the stored days.

``monthly_price_sums`` holds each symbol's days of each calendar month added
up; whatever writes ``financial_data`` refreshes the months it changed here.
"""
import datetime
import functools
from typing import cast

from sqlalchemy import Table, and_, bindparam, delete, extract, func, insert, select, true
from sqlalchemy.orm import Session

from financial.models import FinancialData, MonthlyPriceSums
from financial.months import last_day_of_month, month_index, month_number


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
