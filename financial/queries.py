"""Read services for stored prices: filtered, counted, paged and streamed in SQL."""
import datetime
from collections.abc import Sequence

from sqlalchemy import Result, Row, and_, func, select
from sqlalchemy.orm import Session

from financial.models import FinancialData

LIST_ORDER = (FinancialData.date, FinancialData.symbol)


def price_filters(
    symbols: Sequence[str] | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
) -> list:
    """Return WHERE conditions for optional symbols (any of them) and an inclusive date range."""
    conditions = []
    if symbols is not None:
        conditions.append(FinancialData.symbol == symbols[0] if len(symbols) == 1
                          else FinancialData.symbol.in_(symbols))
    if start_date is not None:
        conditions.append(FinancialData.date >= start_date)
    if end_date is not None:
        conditions.append(FinancialData.date <= end_date)
    return conditions


def count_prices(
    session: Session,
    *,
    symbols: Sequence[str] | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
) -> int:
    """Return how many rows match the optional symbols and inclusive date range."""
    conditions = price_filters(symbols, start_date, end_date)
    return session.scalar(select(func.count()).select_from(FinancialData).where(*conditions)) or 0


def list_prices(
    session: Session,
    *,
    symbols: Sequence[str] | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
    fields: Sequence[str],
    limit: int,
    offset: int,
) -> list[Row]:
    """Return ``limit`` matching rows after ``offset``, ordered by date, then symbol.

    Rows hold the columns named by ``fields``. The page's keys are picked
    from the (date, symbol) or primary-key index alone and only those rows
    are read: a deep OFFSET then skips index entries instead of whole rows
    (a "deferred join").
    """
    keys = (
        select(FinancialData.symbol, FinancialData.date)
        .where(*price_filters(symbols, start_date, end_date))
        .order_by(*LIST_ORDER)
        .limit(limit)
        .offset(offset)
        .subquery()
    )
    joined = and_(FinancialData.symbol == keys.c.symbol, FinancialData.date == keys.c.date)
    return list(session.execute(
        select(*_columns(fields)).select_from(FinancialData).join(keys, joined)
        .order_by(*LIST_ORDER)
    ).all())


def stream_prices(
    session: Session,
    *,
    symbols: Sequence[str] | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
    fields: Sequence[str],
    batch_size: int,
) -> Result:
    """Run the query for every matching row, ordered like ``list_prices``; return its result.

    The rows come from a server-side cursor, ``batch_size`` at a time, so
    memory stays flat whatever their number; on MySQL the connection can run
    nothing else until the result is read or closed. The caller closes it.
    """
    return session.execute(
        select(*_columns(fields))
        .where(*price_filters(symbols, start_date, end_date))
        .order_by(*LIST_ORDER)
        .execution_options(stream_results=True, yield_per=batch_size)
    )


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


def _columns(fields: Sequence[str]) -> list:
    return [getattr(FinancialData, name) for name in fields]
