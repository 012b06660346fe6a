"""Read services for stored prices: filtered, counted and paged in SQL."""
import datetime

from sqlalchemy import Row, and_, func, select
from sqlalchemy.orm import Session

from financial.models import FinancialData

PRICE_COLUMNS = (
    FinancialData.symbol,
    FinancialData.date,
    FinancialData.open_price,
    FinancialData.close_price,
    FinancialData.volume,
)


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


def count_prices(
    session: Session,
    *,
    symbol: str | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
) -> int:
    """Return how many rows match the optional symbol and inclusive date range."""
    conditions = price_filters(symbol, start_date, end_date)
    return session.scalar(select(func.count()).select_from(FinancialData).where(*conditions)) or 0


def list_prices(
    session: Session,
    *,
    symbol: str | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
    limit: int,
    offset: int,
) -> list[Row]:
    """Return ``limit`` matching rows after ``offset``, ordered by date, then symbol.

    The page's keys are picked from the (date, symbol) or primary-key index
    alone and only those rows are read: a deep OFFSET then skips index
    entries instead of whole rows (a "deferred join").
    """
    conditions = price_filters(symbol, start_date, end_date)
    order = (FinancialData.date, FinancialData.symbol)
    keys = (
        select(FinancialData.symbol, FinancialData.date)
        .where(*conditions)
        .order_by(*order)
        .limit(limit)
        .offset(offset)
        .subquery()
    )
    joined = and_(FinancialData.symbol == keys.c.symbol, FinancialData.date == keys.c.date)
    return list(session.execute(
        select(*PRICE_COLUMNS).select_from(FinancialData).join(keys, joined).order_by(*order)
    ).all())


def newest_dates(session: Session, *, limit: int) -> list[Row]:
    """Return (symbol, newest stored date) of the first ``limit`` symbols, ordered by symbol.

    Each symbol's maximum is read from the end of its run in the primary-key index.
    """
    return list(session.execute(
        select(FinancialData.symbol, func.max(FinancialData.date))
        .group_by(FinancialData.symbol)
        .order_by(FinancialData.symbol)
        .limit(limit)
    ).all())
