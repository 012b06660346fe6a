"""The price record, shared by the API, the CSV export and the fetch job's --dry-run.

Its fields and their order are the README's (`GET /api/financial_data`, the
`fields` parameter).
"""
import datetime
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

# Every field a record may carry, in the README's order.
RECORD_FIELDS = (
    "symbol", "date", "open_price", "high_price", "low_price", "close_price",
    "adjusted_close_price", "volume", "dividend_amount", "split_coefficient",
)
# What the API serves when the client names no fields: the original five.
DEFAULT_FIELDS = ("symbol", "date", "open_price", "close_price", "volume")


def format_price(value: Decimal) -> str:
    """Write a price exactly, trailing zeros dropped but at least two decimals.

    150.1000 -> "150.10", 12.3456 -> "12.3456", 100 -> "100.00".
    """
    return _exact(value, min_places=2)


def format_ratio(value: Decimal) -> str:
    """Write a ratio (the split coefficient) exactly, trailing zeros dropped but one decimal kept.

    1.00000000 -> "1.0" (as AlphaVantage writes it), 0.33333333 -> "0.33333333".
    """
    return _exact(value, min_places=1)


def _exact(value: Decimal, min_places: int) -> str:
    # String work rather than normalize/quantize: an export formats millions of
    # values. str() is the fastest, but writes an exponent for some (1E+2, 0E-8).
    text = str(value)
    if "E" in text:
        text = f"{value:f}"
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.rstrip('0').ljust(min_places, '0')}"


def _format_date(value: datetime.date) -> str:
    return value.isoformat()


def _format_volume(value: int) -> str:
    return str(int(value))


_FORMATS: dict[str, Callable[[Any], str]] = {
    "symbol": str,
    "date": _format_date,
    "open_price": format_price,
    "high_price": format_price,
    "low_price": format_price,
    "close_price": format_price,
    "adjusted_close_price": format_price,
    "volume": _format_volume,
    "dividend_amount": format_price,
    "split_coefficient": format_ratio,
}


def price_record(values: Mapping[Any, Any], fields: Sequence[str]) -> dict[str, str | None]:
    """Return one trading day as the API's record, keyed by ``fields`` in their order.

    Every value is a string; a null (a column not known for that day) stays None.
    """
    return dict(zip(fields, record_values([values[name] for name in fields], fields)))


def record_values(values: Sequence[Any], fields: Sequence[str]) -> list[str | None]:
    """Return the record's values of ``values``, given in the order of ``fields``, as a list."""
    return [None if value is None else _FORMATS[name](value)
            for name, value in zip(fields, values)]
