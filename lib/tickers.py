"""What counts as a stock symbol, for the API, the fetch job and saved files alike."""
import re

# A ticker such as IBM, BRK.B or TSCO.LON: 1-16 letters, digits, '.' or '-'.
SYMBOL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.\-]{0,15}"


def is_valid_symbol(text: str) -> bool:
    """Tell whether the whole of ``text`` is a ticker (no trailing newline slips through)."""
    return re.fullmatch(SYMBOL_PATTERN, text) is not None
