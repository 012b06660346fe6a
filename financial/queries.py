"""Read services for stored prices: filtered, counted, paged and streamed in SQL."""
import datetime
from collections.abc import Sequence

from sqlalchemy import Result, Row, Select, and_, func, select, union_all
from sqlalchemy.orm import Session

from financial.models import FinancialData, MonthlyPriceSums
from financial.months import RangeMonths, first_day, last_day_of_month, month_index, split_range

LIST_ORDER = (FinancialData.date, FinancialData.symbol)
# From these offsets on, a page is first looked up in the monthly sums (``_months_of_page``);
# below them, skipping index entries costs less than that query. Without a symbol filter
# it adds up every symbol's months: on 500 symbols x 20 years, as long as skipping about
# 400,000 entries on MariaDB.
DEEP_OFFSET = 10_000
DEEP_OFFSET_ALL_SYMBOLS = 400_000
# A list's count adds up the monthly sums from this many whole months times symbols, or
# whole months without a symbol filter (``count_listed_prices``); below, counting index
# entries costs less. Measured on 500 symbols x 20 years: the sums were faster from 500
# symbol-months (MariaDB) or 1,000 (SQLite); without a symbol filter they are read for
# every symbol (the table has no index by month), faster from 12 months (MariaDB) or 18.
COUNT_BY_MONTHS = 1_000
COUNT_BY_MONTHS_ALL_SYMBOLS = 18
# An open start reaches back to the oldest stored day: taken as 20 years, so that one
# symbol's whole history is counted from its rows, five symbols' from the sums.
OPEN_START_MONTHS = 240


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
    return session.scalar(_count(symbols, start_date, end_date)) or 0


def count_listed_prices(
    session: Session,
    *,
    symbols: Sequence[str] | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
) -> int:
    """Return ``count_prices``'s number for a list page, through the monthly sums when wide.

    A range of enough whole months times symbols (or whole months, without a
    symbol filter) is counted by ``count_prices_by_months``; a narrower one
    walks its index entries, which costs less there.
    """
    months = _months_spanned(start_date, end_date)
    if (months >= COUNT_BY_MONTHS_ALL_SYMBOLS if symbols is None
            else months * len(symbols) >= COUNT_BY_MONTHS):
        return count_prices_by_months(session, symbols=symbols, start_date=start_date,
                                      end_date=end_date)
    return count_prices(session, symbols=symbols, start_date=start_date, end_date=end_date)


def count_prices_by_months(
    session: Session,
    *,
    symbols: Sequence[str] | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
) -> int:
    """Return how many rows match, adding up the whole months' ``days`` in ``monthly_price_sums``.

    The partial months at either end are counted from their rows, in the
    same statement. Equal to ``count_prices`` as long as the sums equal the
    stored days (the fetch job keeps them so; ``flask refresh-sums`` restores them).
    """
    parts = split_range(start_date, end_date)
    if not parts.has_whole_months:
        return count_prices(session, symbols=symbols, start_date=start_date, end_date=end_date)
    counts = union_all(
        _whole_months_sums(symbols, parts, func.sum(MonthlyPriceSums.days)),
        *(_count(symbols, *days) for days in (parts.head, parts.tail) if days is not None),
    ).subquery()
    return int(session.scalar(select(func.sum(*counts.c))) or 0)


def _whole_months_sums(symbols: Sequence[str] | None, parts: RangeMonths, *columns) -> Select:
    """Select ``columns`` of the monthly sums of ``symbols`` in the whole months of ``parts``."""
    sums = MonthlyPriceSums
    months = select(*columns).where(sums.month >= parts.first_month)
    if parts.last_month is not None:
        months = months.where(sums.month <= parts.last_month)
    if symbols is not None:
        months = months.where(sums.symbol.in_(symbols))
    return months


def _months_spanned(start_date: datetime.date | None, end_date: datetime.date | None) -> int:
    """Return the whole months of the range, give or take one; no day after today is stored."""
    if start_date is None:
        return OPEN_START_MONTHS
    return month_index(end_date or datetime.date.today()) - month_index(start_date)


def _count(symbols: Sequence[str] | None, start_date: datetime.date | None,
           end_date: datetime.date | None):
    return select(func.count()).select_from(FinancialData).where(
        *price_filters(symbols, start_date, end_date))


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
    (a "deferred join"). A deep page is first narrowed to the months it
    falls in, so the entries skipped are at most a few months'
    (``_months_of_page``).
    """
    if offset >= (DEEP_OFFSET if symbols is not None else DEEP_OFFSET_ALL_SYMBOLS):
        start_date, end_date, offset = _months_of_page(
            session, symbols, start_date, end_date, limit, offset)
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


def _months_of_page(
    session: Session,
    symbols: Sequence[str] | None,
    start_date: datetime.date | None,
    end_date: datetime.date | None,
    limit: int,
    offset: int,
) -> tuple[datetime.date | None, datetime.date | None, int]:
    """Return the range and offset of the same page, narrowed to the whole months it spans.

    Rows are ordered by date first, so the rows of the months before the
    page's first month all come before it: their number, read from
    ``monthly_price_sums`` (kept equal to the stored days), is taken off the
    offset, and the range starts at that month. Likewise it ends with the
    month where the page's last row falls. A partial month at the range's
    start is counted from its rows; the pages of a partial month at its end
    keep the range's end.
    """
    parts = split_range(start_date, end_date)
    if not parts.has_whole_months:
        return start_date, end_date, offset
    seen = 0  # the matching rows before the month at hand
    if parts.head is not None:
        seen = count_prices(session, symbols=symbols, start_date=parts.head[0],
                            end_date=parts.head[1])
    if offset < seen:
        return start_date, end_date, offset
    sums = MonthlyPriceSums
    months = _whole_months_sums(symbols, parts, sums.month, func.sum(sums.days))
    page_start, skipped = None, 0
    for month, days in session.execute(months.group_by(sums.month).order_by(sums.month)):
        if page_start is None and seen + days > offset:
            page_start, skipped = first_day(month), seen
        seen += days
        if page_start is not None and seen >= offset + limit:
            return page_start, last_day_of_month(first_day(month)), offset - skipped
    if page_start is not None:
        return page_start, end_date, offset - skipped
    if parts.tail is None:
        return start_date, end_date, offset  # no row left: the sums disagree with the rows
    return *parts.tail, offset - seen  # in the partial last month


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
