"""Turn service results into JSON-ready values: exact strings and rounded numbers."""
import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from sqlalchemy import Row

from app.envelope import envelope
from financial.freshness import SymbolFreshness
from financial.models import FetchRun, FetchRunSymbol
from financial.records import price_record
from financial.runs import iso_utc
from financial.stats import PriceStatistics


def price_row(row: Row, fields: Sequence[str]) -> dict:
    """Return one stored row, holding at least ``fields``, as a record of those fields."""
    return price_record(row._mapping, fields)


def pagination(count: int, page: int, limit: int) -> dict:
    """Return the pagination block; ``pages`` is ceil(count / limit)."""
    return {"count": count, "page": page, "limit": limit, "pages": -(-count // limit)}


Item = TypeVar("Item")


def page_envelope(count: int, page: int, limit: int, fetch: Callable[[int], Iterable[Item]],
                  record: Callable[[Item], dict]) -> dict:
    """Return the body of one page of ``count`` items: ``record`` of each, and the pagination.

    ``fetch(offset)`` reads the page's items. A page past the last one is
    answered from the count alone, so an absurd page number never reaches
    the database.
    """
    offset = (page - 1) * limit
    items = fetch(offset) if offset < count else ()
    return envelope([record(item) for item in items], pagination=pagination(count, page, limit))


def statistics_record(stats: PriceStatistics, symbol: str, start_date: datetime.date,
                      end_date: datetime.date) -> dict:
    """Return the statistics object: prices as JSON numbers, volume as an integer."""
    return {
        "start_date": start_date.isoformat(),
        "end_date": end_date.isoformat(),
        "symbol": symbol,
        # A Decimal with two places converts to the float whose shortest repr
        # is those same digits, so the JSON number reads exactly as rounded.
        "average_daily_open_price": float(stats.average_daily_open_price),
        "average_daily_close_price": float(stats.average_daily_close_price),
        "average_daily_volume": stats.average_daily_volume,
    }


def symbol_record(entry: SymbolFreshness) -> dict:
    """Return one stored symbol with its span and freshness; times in UTC with a Z."""
    return {
        "symbol": entry.symbol,
        "first_date": entry.first_date.isoformat(),
        "last_date": entry.last_date.isoformat(),
        "trading_days": entry.trading_days,
        "sessions_behind": entry.sessions_behind,
        "stale": entry.stale,
        "last_fetched_at": iso_utc(entry.last_fetched_at),
        "last_fetch_status": entry.last_fetch_status,
    }


def fetch_run_record(run: FetchRun, symbols: list[FetchRunSymbol]) -> dict:
    """Return one recorded run with its symbols' outcomes."""
    return {
        "id": run.id,
        "started_at": iso_utc(run.started_at),
        "finished_at": iso_utc(run.finished_at),
        "trigger": run.trigger,
        "status": run.status,
        "rows_new": run.rows_new,
        "rows_updated": run.rows_updated,
        "message": run.message,
        "symbols": [{
            "symbol": outcome.symbol,
            "status": outcome.status,
            "rows_fetched": outcome.rows_fetched,
            "rows_new": outcome.rows_new,
            "rows_updated": outcome.rows_updated,
            "newest_date": outcome.newest_date.isoformat() if outcome.newest_date else None,
            "error": outcome.error,
        } for outcome in symbols],
    }
