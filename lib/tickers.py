"""What counts as a stock symbol, for the API, the fetch job and saved files alike."""
import re

# A ticker such as IBM, BRK.B or TSCO.LON.
SYMBOL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.\-]{0,15}"
# The rule in words, for every message that refuses a symbol.
SYMBOL_RULE = "1 to 16 letters, digits, '.' or '-', starting with a letter or digit"

_SYMBOL = re.compile(SYMBOL_PATTERN)


def is_valid_symbol(text: str) -> bool:
    """Tell whether the whole of ``text`` is a ticker (no trailing newline slips through)."""
    return _SYMBOL.fullmatch(text) is not None


def normalize_symbol(text: object) -> str | None:
    """Return ``text`` stripped and upper-cased if it is a ticker, else None."""
    cleaned = text.strip().upper() if isinstance(text, str) else ""
    return cleaned if is_valid_symbol(cleaned) else None
