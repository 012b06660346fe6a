"""Calendar dates written exactly as YYYY-MM-DD, for the API and AlphaVantage payloads."""
import datetime
import re
from typing import TypeGuard

# ASCII digits only: \d would also take other scripts' digits, and
# date.fromisoformat alone also takes 20230324 or 2023-W12-5.
ISO_DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_ISO_DATE = re.compile(ISO_DATE_PATTERN)


def is_iso_date_text(text: object) -> TypeGuard[str]:
    """Tell whether ``text`` is written as YYYY-MM-DD (the date itself may not exist)."""
    return isinstance(text, str) and _ISO_DATE.fullmatch(text) is not None


def parse_iso_date(text: object) -> datetime.date | None:
    """Return the date ``text`` names as YYYY-MM-DD, or None if it is not one."""
    if not is_iso_date_text(text):
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None
