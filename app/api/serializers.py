"""Turn service results into JSON-ready values: exact strings and rounded numbers."""
import datetime

from sqlalchemy import Row

from financial.records import price_record
from financial.stats import PriceStatistics


def price_row(row: Row) -> dict:
    """Return one stored row (symbol, date, open, close, volume) as a record."""
    return price_record(row.symbol, row.date, row.open_price, row.close_price, row.volume)


def pagination(count: int, page: int, limit: int) -> dict:
    """Return the pagination block; ``pages`` is ceil(count / limit)."""
    return {"count": count, "page": page, "limit": limit, "pages": -(-count // limit)}


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
