"""Read services for stored prices: filtered, counted and paged in SQL."""
import datetime
from dataclasses import dataclass

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from financial.models import FinancialData

PRICE_COLUMNS = (
    FinancialData.symbol,
    FinancialData.date,
    FinancialData.open_price,
    FinancialData.close_price,
    FinancialData.volume,
)


@dataclass(frozen=True)
class PricePage:
    """One page of price rows plus the number of rows matching the filters."""

    rows: list[Row]
    count: int


def price_filters(
    symbol: str | None, start_date: datetime.date | None, end_date: datetime.date | None
) -> list:
    """Return WHERE conditions for an optional symbol and inclusive date range."""
    conditions = []
    if symbol is not None:
        conditions.append(FinancialData.symbol == symbol)
    if start_date is not None:
        conditions.append(FinancialData.date >= start_date)
    if end_date is not None:
        conditions.append(FinancialData.date <= end_date)
    return conditions


def list_prices(
    session: Session,
    *,
    symbol: str | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
    limit: int,
    page: int,
) -> PricePage:
    """Return page ``page`` (1-based) of ``limit`` rows ordered by date, then symbol.

    A page past the last one has no rows but the true count; the row query is
    then skipped, so an absurd page number never reaches the database.
    """
    conditions = price_filters(symbol, start_date, end_date)
    count = session.scalar(select(func.count()).select_from(FinancialData).where(*conditions))
    offset = (page - 1) * limit
    if offset >= count:
        return PricePage(rows=[], count=count)
    rows = session.execute(
        select(*PRICE_COLUMNS)
        .where(*conditions)
        .order_by(FinancialData.date, FinancialData.symbol)
        .limit(limit)
        .offset(offset)
    ).all()
    return PricePage(rows=list(rows), count=count)
