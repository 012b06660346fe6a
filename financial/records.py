"""The contract's record shape, shared by the API and the fetch job's --dry-run."""
import datetime
from decimal import Decimal

TWO_PLACES = Decimal("0.01")


def format_price(value: Decimal) -> str:
    """Write a price exactly, trailing zeros dropped but at least two decimals.

    150.1000 -> "150.10", 12.3456 -> "12.3456", 100 -> "100.00".
    """
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        normalized = normalized.quantize(TWO_PLACES)
    return f"{normalized:f}"


def price_record(symbol: str, date: datetime.date, open_price: Decimal, close_price: Decimal,
                 volume: int) -> dict:
    """Return one trading day as the contract's record: every value a string."""
    return {
        "symbol": symbol,
        "date": date.isoformat(),
        "open_price": format_price(open_price),
        "close_price": format_price(close_price),
        "volume": str(int(volume)),
    }
