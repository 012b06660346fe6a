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
from financial.records import price_record
from lib.avantage_api import DailySeries
from lib.db import is_lock_conflict, upsert_rows

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_DAYS = 14
STORE_ATTEMPTS = 3
STORE_RETRY_PAUSE_SECONDS = 0.5
ROW_COLUMNS = ["symbol", "date", "open_price", "close_price", "volume"]
VALUE_COLUMNS = ROW_COLUMNS[2:]


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
    full weeks. ``days=None`` keeps everything. Prices stay ``Decimal``.
    """
    frame = pd.DataFrame([asdict(bar) for bar in series.bars], columns=ROW_COLUMNS[1:])
    frame.insert(0, "symbol", series.symbol)
    if days is not None and not frame.empty:
        newest = frame["date"].max()
        frame = frame[frame["date"] > newest - datetime.timedelta(days=days)]
    return frame.sort_values("date", kind="stable").reset_index(drop=True)


def to_records(frame: pd.DataFrame) -> list[dict]:
    """Return the rows in the contract's record shape (strings, prices as the API writes them)."""
    return [price_record(*row) for row in frame[ROW_COLUMNS].itertuples(index=False)]


def store_prices(session: Session, symbol: str, frame: pd.DataFrame) -> StoreResult:
    """Upsert the rows of ``symbol`` in ``frame``; only new or changed rows are written.

    Runs in the caller's transaction (flushes, never commits) so one symbol
    is one transaction. Counting against the stored rows first keeps the
    summary exact on every backend; the upsert itself stays correct even if
    another run inserts the same rows in between.
    """
    rows = [{"symbol": symbol, "date": day, "open_price": open_price,
             "close_price": close_price, "volume": int(volume)}
            for day, open_price, close_price, volume
            in frame[ROW_COLUMNS[1:]].itertuples(index=False)]
    if not rows:
        return StoreResult(symbol=symbol, fetched=0, new=0, updated=0)
    stored = _stored_values(session, symbol, [row["date"] for row in rows])
    new = [row for row in rows if row["date"] not in stored]
    changed = [row for row in rows
               if row["date"] in stored and stored[row["date"]] != _values(row)]
    upsert_rows(session, FinancialData, new + changed, key_columns=("symbol", "date"))
    return StoreResult(symbol=symbol, fetched=len(rows), new=len(new), updated=len(changed))


def _values(row: dict) -> tuple:
    return tuple(row[column] for column in VALUE_COLUMNS)


def _stored_values(session: Session, symbol: str, dates: list[datetime.date]) -> dict:
    """Return {date: (open, close, volume)} of the stored rows of ``symbol`` in the span."""
    result = session.execute(
        select(FinancialData.date, FinancialData.open_price, FinancialData.close_price,
               FinancialData.volume)
        .where(FinancialData.symbol == symbol,
               FinancialData.date.between(min(dates), max(dates)))
    )
    return {day: (open_price, close_price, int(volume))
            for day, open_price, close_price, volume in result}


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
