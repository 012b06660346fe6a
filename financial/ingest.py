"""Turn fetched series into the table's rows: keep the recent window, upsert per symbol."""
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from financial.models import FinancialData
from financial.records import RECORD_FIELDS, price_record
from lib.avantage_api import DailySeries
from lib.db import is_lock_conflict, upsert_rows

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_DAYS = 14
STORE_ATTEMPTS = 3
STORE_RETRY_PAUSE_SECONDS = 0.5
ROW_COLUMNS = list(RECORD_FIELDS)
VALUE_COLUMNS = ROW_COLUMNS[2:]
# Only TIME_SERIES_DAILY_ADJUSTED carries these: a run without them (the free
# TIME_SERIES_DAILY) must not erase what an earlier adjusted run stored.
KEPT_WHEN_MISSING = ("adjusted_close_price", "dividend_amount", "split_coefficient")


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


def recent_days(series: DailySeries, days: int | None = DEFAULT_WINDOW_DAYS) -> pd.DataFrame:
    """Return the series as rows ordered by date, keeping only the last ``days`` days.

    The window is ``newest - days < date <= newest``, where ``newest`` is the
    newest day in the series, so a run on a weekend or holiday still keeps
    full weeks. ``days=None`` keeps everything. Prices stay ``Decimal``;
    the adjusted values of a TIME_SERIES_DAILY series are None.
    """
    frame = pd.DataFrame([asdict(bar) for bar in series.bars], columns=ROW_COLUMNS[1:])
    frame.insert(0, "symbol", series.symbol)
    if days is not None and not frame.empty:
        newest = frame["date"].max()
        frame = frame[frame["date"] > newest - datetime.timedelta(days=days)]
    return frame.sort_values("date", kind="stable").reset_index(drop=True)


def to_records(frame: pd.DataFrame) -> list[dict]:
    """Return the rows as the API's records with every field (``fields=all``)."""
    return [price_record(row, RECORD_FIELDS) for row in frame[ROW_COLUMNS].to_dict("records")]


def store_prices(session: Session, symbol: str, frame: pd.DataFrame) -> StoreResult:
    """Upsert the rows of ``symbol`` in ``frame``; only new or changed rows are written.

    Runs in the caller's transaction (flushes, never commits) so one symbol
    is one transaction. Counting against the stored rows first keeps the
    summary exact on every backend; the upsert itself stays correct even if
    another run inserts the same rows in between. A missing adjusted value
    keeps the stored one, so a day that differs only by lacking them is not
    counted as updated.
    """
    rows = [{**values, "symbol": symbol, "volume": int(values["volume"])}
            for values in frame[ROW_COLUMNS[1:]].to_dict("records")]
    if not rows:
        return StoreResult(symbol=symbol, fetched=0, new=0, updated=0)
    stored = _stored_values(session, symbol, [row["date"] for row in rows])
    new = [row for row in rows if row["date"] not in stored]
    changed = [row for row in rows
               if row["date"] in stored and stored[row["date"]] != _kept(row, stored[row["date"]])]
    upsert_rows(session, FinancialData, new + changed, key_columns=("symbol", "date"),
                keep_when_null=KEPT_WHEN_MISSING)
    return StoreResult(symbol=symbol, fetched=len(rows), new=len(new), updated=len(changed))


def _kept(row: dict, stored: tuple) -> tuple:
    """Return the values the upsert leaves in the table for ``row`` over ``stored``."""
    return tuple(old if name in KEPT_WHEN_MISSING and row[name] is None else row[name]
                 for name, old in zip(VALUE_COLUMNS, stored))


def _stored_values(session: Session, symbol: str, dates: list[datetime.date]) -> dict:
    """Return {date: (value columns...)} of the stored rows of ``symbol`` in the span."""
    result = session.execute(
        select(FinancialData.date, *(getattr(FinancialData, name) for name in VALUE_COLUMNS))
        .where(FinancialData.symbol == symbol,
               FinancialData.date.between(min(dates), max(dates)))
    )
    return {day: tuple(values) for day, *values in result}


def store_symbol(
    session: Session,
    symbol: str,
    frame: pd.DataFrame,
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
            result = store_prices(session, symbol, frame)
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
