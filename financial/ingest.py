"""Turn fetched series into the table's rows: keep the recent window, upsert per symbol.

Also deletes a symbol's rows: whatever writes ``financial_data`` keeps the
monthly sums derived from it in step, in the same transaction.
"""
import datetime
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, is_not, not_
from typing import cast

from sqlalchemy import ColumnElement, CursorResult, Table, delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from financial.models import FinancialData
from financial.monthly_sums import refresh_monthly_sums
from financial.records import RECORD_FIELDS, price_record
from lib.avantage_api import DailyBar, DailySeries
from lib.db_errors import is_lock_conflict
from lib.storage import RowCodec, row_codec, rows_stored_unchanged, upsert_encoded

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_DAYS = 14
STORE_ATTEMPTS = 3
STORE_RETRY_PAUSE_SECONDS = 0.5
# The table's columns in its order, as the row codec takes them: the record
# shape (RECORD_FIELDS) may have fields the table does not store.
ROW_COLUMNS = tuple(cast(Table, FinancialData.__table__).c.keys())
VALUE_COLUMNS = ROW_COLUMNS[2:]
# Only TIME_SERIES_DAILY_ADJUSTED carries these: a run without them (the free
# TIME_SERIES_DAILY) must not erase what an earlier adjusted run stored.
KEPT_WHEN_MISSING = ("adjusted_close_price", "dividend_amount", "split_coefficient")
_KEPT_INDEXES = frozenset(VALUE_COLUMNS.index(name) for name in KEPT_WHEN_MISSING)
_COMPARED_WHEN_KEPT = [name for name in ROW_COLUMNS[1:] if name not in KEPT_WHEN_MISSING]


@dataclass(frozen=True)
class StoreResult:
    """What storing one symbol did: rows fetched (in the window), new and updated."""

    symbol: str
    fetched: int
    new: int
    updated: int

    @property
    def changed(self) -> bool:
        """Tell whether any row was written."""
        return bool(self.new or self.updated)


def recent_days(series: DailySeries, days: int | None = DEFAULT_WINDOW_DAYS) -> list[DailyBar]:
    """Return the series' bars oldest first, keeping only the last ``days`` days.

    The window is ``newest - days < date <= newest``, where ``newest`` is the
    newest day in the series, so a run on a weekend or holiday still keeps
    full weeks. ``days=None`` keeps everything. pandas selects and orders
    the days of a window by their dates alone: the bars themselves never
    enter a frame, so prices stay ``Decimal`` and the adjusted values of a
    TIME_SERIES_DAILY series stay None.
    """
    if days is None or not series.bars:
        return sorted(series.bars, key=attrgetter("date"))
    # Imported here: it takes a third of the job's start-up, which a full
    # history (--full, the sample) does not need.
    import pandas as pd

    dates = pd.Series([bar.date for bar in series.bars], dtype=object)
    newest = dates.max()
    if newest.toordinal() <= days:  # the window starts before year 1: every day is in it
        return sorted(series.bars, key=attrgetter("date"))
    dates = dates[dates > newest - datetime.timedelta(days=days)]
    return [series.bars[position] for position in dates.sort_values(kind="stable").index]


def to_records(symbol: str, bars: Sequence[DailyBar]) -> list[dict]:
    """Return the bars as the API's records with every field (``fields=all``)."""
    return [price_record(dict(zip(ROW_COLUMNS, _row(symbol, bar))), RECORD_FIELDS)
            for bar in bars]


def _row(symbol: str, bar: DailyBar) -> tuple:
    """Return one bar as the table's row, values in ROW_COLUMNS order.

    Written out rather than derived from ROW_COLUMNS: it runs for every row
    stored, and an ``attrgetter`` costs twice as much. tests/unit/test_ingest.py
    checks it against ROW_COLUMNS.
    """
    return (symbol, bar.date, bar.open_price, bar.high_price, bar.low_price, bar.close_price,
            bar.adjusted_close_price, bar.volume, bar.dividend_amount, bar.split_coefficient)


def store_prices(session: Session, symbol: str, bars: Sequence[DailyBar]) -> StoreResult:
    """Upsert the bars of ``symbol`` (oldest first); only new or changed rows are written.

    Runs in the caller's transaction (flushes, never commits) so one symbol
    is one transaction. Counting against the stored rows first keeps the
    summary exact on every backend; the upsert itself stays correct even if
    another run inserts the same rows in between. A missing adjusted value
    keeps the stored one, so a day that differs only by lacking them is not
    counted as updated. Rows are compared and written as the database
    stores them (``lib.storage.RowCodec``): a full history is tens of thousands.
    Those stored as they are on MySQL are known from the text the server
    writes of them (``lib.storage.rows_stored_unchanged``), without the
    adjusted values when no bar has any; only the others are read back and
    compared value by value.
    """
    if not bars:
        return StoreResult(symbol=symbol, fetched=0, new=0, updated=0)
    codec = row_codec(session, FinancialData, ROW_COLUMNS)
    rows = codec.encode(_row(symbol, bar) for bar in bars)
    # TIME_SERIES_DAILY: the upsert keeps every stored value of those columns.
    compared = _COMPARED_WHEN_KEPT if _lack_kept_values(bars) else ROW_COLUMNS[1:]
    unchanged = rows_stored_unchanged(session, codec, rows, compared,
                                      *_stored_range(codec, symbol, bars[0].date, bars[-1].date))
    if unchanged is None:  # none of these days is stored
        unchanged, pending = [False] * len(rows), []
    else:
        pending = list(compress(bars, map(not_, unchanged)))
    stored = (_stored_values(session, codec, symbol, pending[0].date, pending[-1].date)
              if pending else {})
    new, changed, written_days = [], [], []
    for bar, row, same in zip(bars, rows, unchanged):
        if same:
            continue
        old = stored.get(row[1])
        if old is None:
            new.append(row)
        elif old != row[2:] and old != _kept(row[2:], old):
            changed.append(row)
        else:
            continue
        written_days.append(bar.date)
    upsert_encoded(session, codec, new + changed, key_columns=("symbol", "date"),
                   keep_when_null=KEPT_WHEN_MISSING)
    if written_days:
        refresh_monthly_sums(session, symbol, min(written_days), max(written_days))
    return StoreResult(symbol=symbol, fetched=len(rows), new=len(new), updated=len(changed))


def _lack_kept_values(bars: Sequence[DailyBar]) -> bool:
    """Tell whether no bar has any KEPT_WHEN_MISSING value (a TIME_SERIES_DAILY series).

    Each value is compared with None, never hashed: a Decimal's hash costs
    about a microsecond, and a full history holds tens of thousands.
    """
    return not any(any(map(is_not, map(attrgetter(name), bars), repeat(None)))
                   for name in KEPT_WHEN_MISSING)


def delete_prices(session: Session, symbol: str) -> int:
    """Delete every stored day of ``symbol`` and its monthly sums; return the days deleted.

    Runs in the caller's transaction (flushes, never commits), so the prices
    and their sums go together or not at all. The run history is left alone.
    """
    result = session.execute(delete(FinancialData).where(FinancialData.symbol == symbol))
    refresh_monthly_sums(session, symbol)
    return cast(CursorResult, result).rowcount


def _kept(values: tuple, stored: tuple) -> tuple:
    """Return the values the upsert leaves in the table for ``values`` over ``stored``."""
    return tuple(old if index in _KEPT_INDEXES and new is None else new
                 for index, (new, old) in enumerate(zip(values, stored)))


def _stored_values(session: Session, codec: RowCodec, symbol: str, first: datetime.date,
                   last: datetime.date) -> dict:
    """Return {date: (value columns...)} of the stored rows of ``symbol``, as stored."""
    stored = codec.stored.c
    result = session.execute(
        select(stored.date, *(stored[name] for name in VALUE_COLUMNS))
        .where(*_stored_range(codec, symbol, first, last)))
    return {day: tuple(values) for day, *values in result.all()}


def _stored_range(codec: RowCodec, symbol: str, first: datetime.date,
                  last: datetime.date) -> tuple[ColumnElement[bool], ...]:
    """Return the conditions of the stored rows of ``symbol`` from ``first`` to ``last``."""
    stored = codec.stored.c
    return (stored.symbol == symbol,
            stored.date.between(codec.encode_value("date", first),
                                codec.encode_value("date", last)))


def store_symbol(
    session: Session,
    symbol: str,
    bars: Sequence[DailyBar],
    *,
    attempts: int = STORE_ATTEMPTS,
    pause: float = STORE_RETRY_PAUSE_SECONDS,
    sleep: Callable[[float], object] = time.sleep,
    before_commit: Callable[[StoreResult], object] = lambda _result: None,
) -> StoreResult:
    """Store one symbol as one transaction: commit it, or roll it back and raise.

    Unlike the other services this one commits, because its retry needs the
    whole transaction: a deadlock (MySQL) or a locked database (SQLite)
    between two runs at once aborts it, so it is rolled back and tried again,
    up to ``attempts`` times with a growing pause. Other errors are not retried.
    ``before_commit`` adds to the transaction (the run history's row), so it
    commits or rolls back with the prices.
    """
    attempt = 1
    while True:
        try:
            result = store_prices(session, symbol, bars)
            before_commit(result)
            session.commit()
            return result
        except OperationalError as exc:
            session.rollback()
            if attempt >= attempts or not is_lock_conflict(exc):
                raise
            logger.warning("storing %s hit %s; retrying (%d of %d)", symbol,
                           exc.orig.__class__.__name__, attempt, attempts - 1)
            sleep(pause * attempt)
            attempt += 1
        except Exception:
            session.rollback()
            raise
