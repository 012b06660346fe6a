"""Turn service results into JSON-ready values: exact strings and rounded numbers."""
from decimal import Decimal

from financial.queries import PricePage
from financial.stats import PriceStatistics

TWO_PLACES = Decimal("0.01")


def format_price(value: Decimal) -> str:
    """Write a price exactly, trailing zeros dropped but at least two decimals.

    150.1000 -> "150.10", 12.3456 -> "12.3456", 100 -> "100.00".
    """
    normalized = value.normalize()
    if normalized.as_tuple().exponent > -2:
        normalized = normalized.quantize(TWO_PLACES)
    return f"{normalized:f}"


def price_record(row) -> dict:
    """Return one stored day in the API's record shape, every value a string."""
    return {
        "symbol": row.symbol,
        "date": row.date.isoformat(),
        "open_price": format_price(row.open_price),
        "close_price": format_price(row.close_price),
        "volume": str(int(row.volume)),
    }


def pagination(count: int, page: int, limit: int) -> dict:
    """Return the pagination block; ``pages`` is ceil(count / limit)."""
    return {"count": count, "page": page, "limit": limit, "pages": -(-count // limit)}


def page_body(result: PricePage, page: int, limit: int) -> tuple[list[dict], dict]:
    """Return the records and the pagination block of one page."""
    return [price_record(row) for row in result.rows], pagination(result.count, page, limit)


def statistics_record(stats: PriceStatistics, symbol: str, start_date, end_date) -> dict:
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
