"""Read AlphaVantage JSON bodies: a validated daily series, or the error they stand for.

No HTTP here: the client passes decoded bodies in, and so do saved files
(``get_raw_data.py --from-file``).
"""
import datetime
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cached_property
from itertools import chain, repeat
from operator import attrgetter, itemgetter, le
from pathlib import Path
from typing import Any

from lib.alphavantage.errors import (
    AlphaVantageError, InvalidApiKeyError, InvalidSymbolError, MalformedResponseError,
    PremiumOnlyError, RateLimitError,
)
from lib.alphavantage.redaction import load_json_masked
from lib.alphavantage.repeated_keys import RepeatedKeys
from lib.alphavantage.series import (
    TIME_SERIES_DAILY, TIME_SERIES_DAILY_ADJUSTED, DailyBar, DailySeries,
)
from lib.isodates import ISO_DATE_PATTERN, parse_iso_date
from lib.tickers import normalize_symbol

# The most bytes of an answer kept, decoded, live or saved. A symbol's whole daily history
# (outputsize=full, 25 years) is about 1.5 MB: far past it the answer is no price series,
# or a compressed body that would fill the memory as it is decoded.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
SERIES_KEY = "Time Series (Daily)"
ERROR_KEYS = ("Error Message", "Information", "Note")
_META_KEY = "Meta Data"
_SYMBOL_KEY = "2. Symbol"
_OPEN_KEY, _HIGH_KEY, _LOW_KEY, _CLOSE_KEY = "1. open", "2. high", "3. low", "4. close"
_PRICE_KEYS = (_OPEN_KEY, _HIGH_KEY, _LOW_KEY, _CLOSE_KEY)
_VOLUME_KEYS = {TIME_SERIES_DAILY: "5. volume", TIME_SERIES_DAILY_ADJUSTED: "6. volume"}
_ADJUSTED_ONLY_KEYS = ("5. adjusted close", "6. volume")


@dataclass(frozen=True)
class _Column:
    """How a decimal field must look to fit its column.

    ``precision`` and ``places`` are the column's precision and scale; up to
    ``accepted_places`` are accepted and the extra ones rounded half away
    from zero. Values stay below ``10**integer_digits``.
    """

    precision: int
    places: int
    accepted_places: int
    integer_digits: int
    positive: bool = False

    @property
    def sql_type(self) -> str:
        return f"DECIMAL({self.precision},{self.places})"

    @property
    def plain(self) -> str:
        """The pattern of the usual values, which need no other check: few digits, few decimals.

        Possessive (``+``): what follows a value (a space, the end) is never a
        digit or a point it could give back, so a series' match never backtracks.
        """
        digits, places = self.integer_digits, self.accepted_places
        return rf"[0-9]{{1,{digits}}}+(?:\.[0-9]{{1,{places}}}+)?+"

    @cached_property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.places)


# The columns of financial.models.FinancialData: tests/unit/test_parser_bounds.py compares them.
# Prices are stored as DECIMAL(18,4). Prices stay below 10**9 and volumes below
# 10**14, far above any real stock, so that the sums behind statistics fit the
# 64-bit integers SQLite adds exactly, even over a century of days.
_PRICE = _Column(precision=18, places=4, accepted_places=4, integer_digits=9)
# AlphaVantage computes the adjusted close with up to 12 decimals
# ("135.715749630724"); the column keeps 4, so the rest is rounded.
_ADJUSTED_PRICE = _Column(precision=18, places=4, accepted_places=20, integer_digits=9)
# A split coefficient is a ratio such as 4.0 or 0.33333333, never zero.
_RATIO = _Column(precision=18, places=8, accepted_places=8, integer_digits=9, positive=True)
_MAX_VOLUME = 10**14 - 1
_PLAIN_DECIMAL_PATTERN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_VOLUME_PATTERN = re.compile(r"[0-9]+")
_PLAIN_VOLUME = f"[0-9]{{1,{len(str(_MAX_VOLUME))}}}+"


def _plain_values(pattern: str) -> re.Pattern[str]:
    """Compile the pattern of plain values joined by single spaces, each matching ``pattern``.

    Possessive (``*+``): no value's pattern takes a space, so a repetition
    never needs to give one back.
    """
    return re.compile(rf"(?:{pattern} )*+{pattern}")


_PLAIN_DATES = _plain_values(ISO_DATE_PATTERN)
_PLAIN_PRICES = _plain_values(_PRICE.plain)
_PLAIN_ADJUSTED_PRICES = _plain_values(_ADJUSTED_PRICE.plain)
_PLAIN_RATIOS = _plain_values(_RATIO.plain)
_PLAIN_VOLUMES = _plain_values(_PLAIN_VOLUME)
# Each slot's setter, in the order of DailyBar's fields: a plain series' bars
# are built a field at a time through them (see _bars).
_SETTERS = tuple(getattr(DailyBar, name).__set__ for name in DailyBar.__slots__)

# Order matters: the burst text also mentions "premium endpoints" and
# "25 requests per day", so burst markers are tested first, premium next.
_SHORT_TERM_MARKERS = ("per second", "sparingly", "per minute")
_PREMIUM_MARKERS = ("premium endpoint", "premium feature")
_DAILY_QUOTA_MARKERS = ("per day",)
_BAD_KEY_MARKERS = ("apikey", "api key")


def parse_daily_series(payload: Any, symbol: str | None = None) -> DailySeries:
    """Turn a TIME_SERIES_DAILY(_ADJUSTED) JSON payload into a validated series.

    ``symbol`` wins when given (the client passes the one it asked for); saved
    files (``--from-file``) omit it and the payload's ``Meta Data`` /
    ``2. Symbol`` is used. Every value is checked against the database columns
    here, so nothing half-valid reaches a transaction.

    An object naming a key twice (the top level, ``Meta Data``, the series,
    a day) is refused: the decoder keeps the second unsaid, and which one
    AlphaVantage meant is anyone's guess.

    Raises:
        MalformedResponseError: naming the symbol and the day at fault.
    """
    if not isinstance(payload, Mapping):
        subject = f"{symbol}: " if symbol else ""
        raise MalformedResponseError(f"{subject}the response is not a JSON object", symbol)
    _refuse_repeated_keys(payload, symbol)
    name = _series_symbol(payload, symbol)
    series = payload.get(SERIES_KEY)
    if not isinstance(series, Mapping):
        raise MalformedResponseError(f"{name}: the response has no {SERIES_KEY!r} object", name)
    if not series:
        raise MalformedResponseError(f"{name}: {SERIES_KEY!r} holds no days", name)
    if isinstance(series, RepeatedKeys):  # which of its days to keep is anyone's guess
        raise MalformedResponseError(
            f"{name}: day {show(series.repeated[0])} is named more than once in {SERIES_KEY!r}",
            name)
    function = _series_function(payload, series)
    bars = _plain_series(series, function)
    if bars is None:
        bars = [_checked_bar(name, day, fields, function) for day, fields in series.items()]
    bars.sort(key=attrgetter("date"), reverse=True)
    return DailySeries(symbol=name, function=function, bars=tuple(bars))


def classify_error_payload(payload: Any, symbol: str | None) -> AlphaVantageError | None:
    """Return the exception an AlphaVantage error body stands for, or None if it is none.

    A body holding the daily series is never an error, whatever else it holds.
    Keys are read in the order ``Error Message``, ``Information``, ``Note``.
    ``symbol`` is the one asked for; a saved answer (None) names none, and
    its file is named by whoever reports the error. An error body naming a
    key twice is read by its last text, as ever: it stores nothing either way.
    """
    if not isinstance(payload, Mapping) or SERIES_KEY in payload:
        return None
    for key in ERROR_KEYS:
        if key in payload:
            text = str(payload[key])
            if key == "Error Message":
                return _classify_error_message(text, symbol)
            return _classify_notice(text, symbol)
    return None


def read_saved_response(path: Path, secret: str | None = None) -> DailySeries:
    """Parse a saved AlphaVantage response; a saved error answer raises as that error.

    Messages leave the file unnamed: the caller names it once, beside them.
    An error's ``symbol`` is the payload's ticker when the payload names a
    valid one, else None (a saved error answer names no symbol). ``secret``
    (the API key) is masked in the payload before anything quotes it, as the
    client masks a live answer: AlphaVantage's daily quota answer names the key.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_ANSWER_BYTES + 1)
        if len(raw) > MAX_ANSWER_BYTES:
            raise AlphaVantageError(f"cannot read a JSON response: larger than "
                                    f"{MAX_ANSWER_BYTES // 2**20} MiB, far more than any "
                                    "price series")
        # UTF-8, with or without a byte-order mark, or UTF-16 or -32 (as some editors
        # and Windows PowerShell write): read as the same answer served live, which
        # requests decodes. Bytes are decoded by json's own rule.
        payload = load_json_masked(raw, secret)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # nested too deep
        raise AlphaVantageError(
            f"cannot read a JSON response ({exc.__class__.__name__})") from None
    error = classify_error_payload(payload, None)
    if error is not None:
        raise error
    return parse_daily_series(payload)


def is_short_term_limit(error: AlphaVantageError) -> bool:
    """Tell whether waiting a few seconds may lift ``error`` (a burst or per-minute limit)."""
    return isinstance(error, RateLimitError) and not error.is_daily_quota


# The longest quote of a bad value in a message or log line, escapes included.
_QUOTE_LIMIT = 40


def show(raw: Any) -> str:
    """Quote a bad value for a message, cut short so a huge field cannot flood a log line.

    Unlike the API's ``quoted_input`` (app/api/params.py), which cuts a query
    parameter's text to 40 characters before its callers quote it, this takes
    any JSON value (a number, null, a list) and cuts its ``repr``: the type
    shows (``1`` is not ``'1'``), and the whole quote, escapes included, stays
    within ``_QUOTE_LIMIT`` characters of a log line.
    """
    text = repr(raw)
    return text if len(text) <= _QUOTE_LIMIT else f"{text[:_QUOTE_LIMIT - 3]}..."


def _has_marker(text: str, markers: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in markers)


def _for(symbol: str | None) -> str:
    """Return " for SYMBOL", or nothing for a saved answer, which names no symbol."""
    return f" for {symbol}" if symbol else ""


def _bad_key(text: str, symbol: str | None) -> InvalidApiKeyError:
    asked = f" (asked for {symbol})" if symbol else ""
    return InvalidApiKeyError(f"AlphaVantage rejected the API key{asked}: {text}", symbol)


def _classify_error_message(text: str, symbol: str | None) -> AlphaVantageError:
    if _has_marker(text, _BAD_KEY_MARKERS):
        return _bad_key(text, symbol)
    if _has_marker(text, ("invalid api call",)):
        named = f" {symbol}" if symbol else ""
        return InvalidSymbolError(f"invalid symbol{named}: AlphaVantage says: {text}", symbol)
    return AlphaVantageError(f"AlphaVantage error{_for(symbol)}: {text}", symbol)


def _classify_notice(text: str, symbol: str | None) -> AlphaVantageError:
    """Classify an ``Information``/``Note`` text; marker order is what keeps them apart."""
    if _has_marker(text, _SHORT_TERM_MARKERS):
        return RateLimitError(f"AlphaVantage short-term rate limit{_for(symbol)}: {text}", symbol)
    if _has_marker(text, _PREMIUM_MARKERS):
        return PremiumOnlyError(f"premium-only AlphaVantage request{_for(symbol)}: {text}",
                                symbol)
    if _has_marker(text, _DAILY_QUOTA_MARKERS):
        not_fetched = f"; {symbol} not fetched, try tomorrow" if symbol else ""
        return RateLimitError(f"the AlphaVantage daily quota is spent{not_fetched}: {text}",
                              symbol, is_daily_quota=True)
    if _has_marker(text, ("demo",) + _BAD_KEY_MARKERS):
        return _bad_key(text, symbol)
    return AlphaVantageError(f"AlphaVantage notice{_for(symbol)}: {text}", symbol)


def _refuse_repeated_keys(payload: Mapping[str, Any], symbol: str | None) -> None:
    """Refuse a payload naming a key twice at its top level or in its ``Meta Data``.

    The days' repeats are refused where they are read. Two ``Meta Data``, or
    two ``2. Symbol`` in it, leave a saved payload's symbol in doubt: the
    error then names none, and the caller names the file.
    """
    meta = payload.get(_META_KEY)
    top_repeats = payload.repeated if isinstance(payload, RepeatedKeys) else ()
    meta_repeats = meta.repeated if isinstance(meta, RepeatedKeys) else ()
    if top_repeats:
        problem = f"the response names {show(top_repeats[0])} more than once"
    elif meta_repeats:
        problem = f"{_META_KEY!r} names {show(meta_repeats[0])} more than once"
    else:
        return
    # Whichever repeat is named, a symbol read from a doubled one is a guess.
    in_doubt = _META_KEY in top_repeats or _SYMBOL_KEY in meta_repeats
    name = None if symbol is None and in_doubt else _series_symbol(payload, symbol)
    raise MalformedResponseError(f"{name}: {problem}" if name else problem, name)


def _series_symbol(payload: Mapping[str, Any], symbol: str | None) -> str:
    """Prefer the caller's symbol; saved files carry theirs in ``Meta Data`` / ``2. Symbol``."""
    given: Any = symbol
    if given is None:
        meta = payload.get(_META_KEY)
        given = meta.get(_SYMBOL_KEY) if isinstance(meta, Mapping) else None
        # Not a string (``42``, a list) is named as given, not called missing.
        if given is not None and (not isinstance(given, str)
                                  or given.strip() and normalize_symbol(given) is None):
            raise MalformedResponseError(f"the payload's symbol {show(given)} is not a ticker")
    cleaned = given.strip().upper() if isinstance(given, str) else ""
    if not cleaned:
        raise MalformedResponseError(
            f"no symbol: none given and no {_META_KEY!r} / {_SYMBOL_KEY!r} in the payload"
        )
    return cleaned


def _series_function(payload: Mapping[str, Any], series: Mapping[str, Any]) -> str:
    """Tell the two layouts apart by the meta description, else by the adjusted-only fields."""
    meta = payload.get(_META_KEY)
    info = meta.get("1. Information") if isinstance(meta, Mapping) else None
    if isinstance(info, str) and _has_marker(info, ("adjusted", "dividend")):
        return TIME_SERIES_DAILY_ADJUSTED
    for fields in series.values():
        if isinstance(fields, Mapping) and any(key in fields for key in _ADJUSTED_ONLY_KEYS):
            return TIME_SERIES_DAILY_ADJUSTED
    return TIME_SERIES_DAILY


def _plain_series(series: Mapping[str, Any], function: str) -> list[DailyBar] | None:
    """Parse a series whose days are all plain a field at a time, or return None.

    A full run reads tens of thousands of days, nearly all of them plain:
    digits within the column's bounds, high and low around open and close.
    Checking and converting all the days' values of a field at once, in C
    (one pattern match, ``map``), costs a quarter less than a Python call
    per day did. A series with any other day is read by ``_checked_bar``,
    day by day, which says precisely what is wrong.
    """
    days = list(series.values())
    if set(map(type, days)) != {dict}:  # a day not an object, or naming a key twice
        return None
    try:
        return _plain_bars(list(series), days, function)
    except (KeyError, TypeError, ValueError):  # a field missing, not a string, not plain
        return None


def _plain_bars(dates: list[str], days: list[dict[str, Any]],
                function: str) -> list[DailyBar] | None:
    """Return the bars of plain days, or None if one is refused all the same.

    A plain day is refused when its high and low do not enclose its open and
    close, or its split is zero. Raises KeyError, TypeError or ValueError for
    a field missing, not a string or not plain, or a date no calendar has.
    """
    parsed_dates = list(map(datetime.date.fromisoformat, _plain(dates, _PLAIN_DATES)))
    open_price, high, low, close = (
        list(map(Decimal, _plain(_column(days, key), _PLAIN_PRICES))) for key in _PRICE_KEYS)
    # low <= open, open <= high, low <= close, close <= high, day by day
    if not all(map(le, chain(low, open_price, low, close), chain(open_price, high, close, high))):
        return None
    volume = map(int, _plain(_column(days, _VOLUME_KEYS[function]), _PLAIN_VOLUMES))
    if function != TIME_SERIES_DAILY_ADJUSTED:
        return _bars(parsed_dates, open_price, high, low, close, repeat(None), volume,
                     repeat(None), repeat(None))
    split = _repeated_decimals(_column(days, "8. split coefficient"), _PLAIN_RATIOS)
    if not all(split):  # a split of zero is refused
        return None
    return _bars(parsed_dates, open_price, high, low, close,
                 _adjusted_closes(_column(days, "5. adjusted close")), volume,
                 _repeated_decimals(_column(days, "7. dividend amount"), _PLAIN_PRICES), split)


def _column(days: list[dict[str, Any]], key: str) -> list[Any]:
    return list(map(itemgetter(key), days))


def _plain(texts: list[Any], pattern: re.Pattern[str]) -> list[str]:
    """Return ``texts`` if each is a plain value of ``pattern``, checked in one match.

    Raises TypeError for a value that is not a string, ValueError for one
    that is not plain.
    """
    joined = " ".join(texts)
    # No value's pattern takes a space: a value holding one would pass for two.
    if joined.count(" ") != len(texts) - 1 or not pattern.fullmatch(joined):
        raise ValueError("not plain")
    return texts


def _repeated_decimals(texts: list[Any], pattern: re.Pattern[str]) -> list[Decimal]:
    """Read a field whose values mostly repeat, each distinct text checked and parsed once.

    Dividends and split coefficients are 0 and 1 on all but a few days.
    """
    distinct = list(set(texts))
    parsed = dict(zip(distinct, map(Decimal, _plain(distinct, pattern))))
    return list(map(parsed.__getitem__, texts))


def _adjusted_closes(texts: list[Any]) -> list[Decimal]:
    """Read plain adjusted closes, rounding only those with more places than the column keeps."""
    try:
        return list(map(Decimal, _plain(texts, _PLAIN_PRICES)))
    except ValueError:
        return [_rounded(raw, _ADJUSTED_PRICE) for raw in _plain(texts, _PLAIN_ADJUSTED_PRICES)]


def _bars(dates: list[datetime.date], *columns: Iterable[Any]) -> list[DailyBar]:
    """Build the bars of columns in DailyBar's field order, as ``DailyBar(...)`` does, at less cost.

    The class is frozen: its __init__ sets each slot through
    object.__setattr__, a Python call per field and bar. Setting one field of
    every bar at once, through the slot's own setter in C, costs a fraction.
    """
    bars = list(map(object.__new__, repeat(DailyBar, len(dates))))
    for setter, values in zip(_SETTERS, (dates, *columns), strict=True):
        deque(map(setter, bars, values), maxlen=0)  # runs the setter on each bar, keeps nothing
    return bars


def _rounded(raw: str, column: _Column) -> Decimal:
    """Return a plain value of ``column`` rounded to its places.

    Raises ValueError for one that rounds up out of the column's bound, which
    ``_checked_bar`` refuses naming it.
    """
    value = Decimal(raw)
    if len(raw.partition(".")[2]) > column.places:
        return _quantized(value, column)
    return value


def _quantized(value: Decimal, column: _Column) -> Decimal:
    """Round ``value`` half away from zero to ``column``'s places.

    Raises ValueError saying why when rounding carries it to the column's
    bound (999999999.99995 rounds to 10**9).
    """
    rounded = value.quantize(column.quantum, rounding=ROUND_HALF_UP)
    if rounded.adjusted() >= column.integer_digits:
        raise ValueError(f"{10**column.integer_digits:,} or more once rounded to "
                         f"{column.places} places, beyond any real value")
    return rounded


def _checked_bar(symbol: str, day: Any, fields: Any, function: str) -> DailyBar:
    """Parse one day checking everything, and raise naming the first problem found."""
    date = _parse_date(symbol, day)
    where = f"{symbol} {day}"
    if not isinstance(fields, Mapping):
        raise MalformedResponseError(f"{where}: the day's entry is not a JSON object", symbol)
    if isinstance(fields, RepeatedKeys):  # never a plain day: its class is not dict
        raise MalformedResponseError(
            f"{symbol}: day {show(day)} names {show(fields.repeated[0])} more than once", symbol)
    open_price, high, low, close = (
        _parse_decimal(symbol, where, fields, key, _PRICE) for key in _PRICE_KEYS)
    _check_high_low(symbol, where, open_price, high, low, close)
    volume_key = _VOLUME_KEYS[function]
    volume = _parse_volume(symbol, where, volume_key, _field(symbol, where, fields, volume_key))
    if function != TIME_SERIES_DAILY_ADJUSTED:
        return DailyBar(date=date, open_price=open_price, high_price=high, low_price=low,
                        close_price=close, volume=volume)
    return DailyBar(
        date=date, open_price=open_price, high_price=high, low_price=low, close_price=close,
        adjusted_close_price=_parse_decimal(symbol, where, fields, "5. adjusted close",
                                            _ADJUSTED_PRICE),
        volume=volume,
        dividend_amount=_parse_decimal(symbol, where, fields, "7. dividend amount", _PRICE),
        split_coefficient=_parse_decimal(symbol, where, fields, "8. split coefficient", _RATIO),
    )


def _check_high_low(symbol: str, where: str, open_price: Decimal, high: Decimal, low: Decimal,
                    close: Decimal) -> None:
    """Refuse a day whose high and low do not enclose its open and close."""
    if high < low:
        problem = f"{_HIGH_KEY!r} {high} is below {_LOW_KEY!r} {low}"
    elif high < max(open_price, close):
        problem = f"{_HIGH_KEY!r} {high} is below the open or close ({max(open_price, close)})"
    elif low > min(open_price, close):
        problem = f"{_LOW_KEY!r} {low} is above the open or close ({min(open_price, close)})"
    else:
        return
    raise MalformedResponseError(f"{where}: {problem}", symbol)


def _parse_date(symbol: str, day: Any) -> datetime.date:
    parsed = parse_iso_date(day)
    if parsed is None:
        raise MalformedResponseError(
            f"{symbol}: day {show(day)} is not a valid YYYY-MM-DD date", symbol
        )
    return parsed


def _field(symbol: str, where: str, fields: Mapping[str, Any], key: str) -> Any:
    if key not in fields:
        raise MalformedResponseError(f"{where}: field {key!r} is missing", symbol)
    return fields[key]


def _parse_decimal(symbol: str, where: str, fields: Mapping[str, Any], key: str,
                   column: _Column) -> Decimal:
    """Parse from the string with Decimal (never float) and check it fits ``column``."""
    raw = _field(symbol, where, fields, key)
    if not isinstance(raw, str):
        raise MalformedResponseError(f"{where}: {key!r} is {show(raw)}, not a string", symbol)
    value = _to_decimal(raw)
    problem = _decimal_problem(raw, value, column)
    if value is None or problem:
        raise MalformedResponseError(f"{where}: {key!r} is {show(raw)}, {problem}", symbol)
    if int(value.as_tuple().exponent) < -column.places:
        try:
            return _quantized(value, column)
        except ValueError as exc:
            raise MalformedResponseError(f"{where}: {key!r} is {show(raw)}, {exc}",
                                         symbol) from None
    return value


def _to_decimal(raw: str) -> Decimal | None:
    try:
        return Decimal(raw)
    except InvalidOperation:
        return None


def _decimal_problem(raw: str, value: Decimal | None, column: _Column) -> str | None:
    if value is None:
        return "not a number"
    if value.is_nan():
        return "not a number (NaN)"
    if value.is_infinite():
        return "infinite"
    if value.is_signed():
        return "negative"
    if not _PLAIN_DECIMAL_PATTERN.fullmatch(raw):
        return "not a plain decimal number"
    if int(value.as_tuple().exponent) < -column.accepted_places:
        return (f"more than {column.accepted_places} decimal places "
                f"(column is {column.sql_type})")
    if value.adjusted() >= column.integer_digits:
        return f"{10**column.integer_digits:,} or more, beyond any real value"
    if column.positive and not value:
        return "zero, which is not a valid value here"
    return None


def _parse_volume(symbol: str, where: str, key: str, raw: Any) -> int:
    if not (isinstance(raw, str) and _VOLUME_PATTERN.fullmatch(raw)):
        raise MalformedResponseError(
            f"{where}: {key!r} is {show(raw)}, not a non-negative integer", symbol
        )
    digits = raw.lstrip("0") or "0"
    # Length first: int() refuses strings over 4300 digits, and nothing that long fits anyway.
    if len(digits) > len(str(_MAX_VOLUME)) or int(digits) > _MAX_VOLUME:
        raise MalformedResponseError(
            f"{where}: {key!r} is {show(raw)}, beyond any real volume (max {_MAX_VOLUME:,})",
            symbol,
        )
    return int(digits)
