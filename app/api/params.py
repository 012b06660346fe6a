"""Query-parameter schemas, parsed by webargs into typed values or a clear 400.

The schemas are also the single source of the Swagger parameter docs.
"""
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import (
    RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema,
)
from webargs.flaskparser import FlaskParser

from financial.errors import InvalidParameterError
from financial.records import DEFAULT_FIELDS, RECORD_FIELDS
from lib.isodates import is_iso_date_text
from lib.tickers import SYMBOL_PATTERN, SYMBOL_RULE, is_valid_symbol

MAX_LIMIT = 1000
DEFAULT_LIMIT = 5
SYMBOLS_DEFAULT_LIMIT = 100
FETCH_RUNS_DEFAULT_LIMIT = 20
MAX_SYMBOLS = 100
ALL_FIELDS = "all"
# The most refused values a message quotes; it counts the rest.
_REFUSED_SHOWN = 5
# ASCII digits only: \d would also take other scripts' digits. The groups are
# the sign and the digits after any leading zeros. The digits start with a
# non-zero (or are one 0), so the zeros are matched in one pass: "0*[0-9]+"
# would try every split of a long run of them, quadratic in its length.
_WHOLE_NUMBER = re.compile(r"(-?)0*([1-9][0-9]*|0)")
# Python converts at most this many digits between text and int (its guard
# against slow conversions): longer numbers are refused before converting.
MOST_DIGITS = 4300
# The largest integer every JSON reader keeps exactly (I-JSON, RFC 7493: a
# JavaScript number), so the page echoed in an answer reads back as sent.
MAX_PAGE = 2**53 - 1


class OneValue(fields.Field):
    """Base of the query parameters' fields: a parameter given more than once is refused.

    webargs hands a field that ``is_multiple`` every value of its parameter,
    as a list: repeated, the field refuses it as such, not as if its first
    value had been given alone, and the repeat is one more field error, so
    the 400 names it beside every other problem. A parameter the schema does
    not take is no field: it is refused for what it is (unknown, or limit on
    the export), however often given, so a mistyped list
    (``symbl=IBM&symbl=AAPL``) is not answered as if its name were right.
    """

    is_multiple = True
    default_error_messages = {"repeated": "is given more than once"}

    def deserialize(self, value: Any, attr: str | None = None,
                    data: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Refuse more than one value, else deserialize the one given.

        Here, not in ``_deserialize``: each field overrides that one and
        reads the value before calling marshmallow's.
        """
        if isinstance(value, list):
            if len(value) > 1:
                raise self.make_error("repeated", name=attr)
            value = value[0]
        return super().deserialize(value, attr, data, **kwargs)


def _list_repeated(example: str) -> str:
    """Return the message of a repeated list parameter, showing how to send one.

    HTTP libraries send a list as the parameter repeated (requests' params,
    URLSearchParams), so a client passing its tickers as a list gets it.
    """
    return "is given more than once; a list is one comma-separated value ({name}=" + example + ")"


class IsoDate(OneValue, fields.Date):
    """A calendar date written exactly as YYYY-MM-DD."""

    default_error_messages = {
        "invalid": "must be a date in YYYY-MM-DD format",
        "impossible": "is not a valid calendar date",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if not is_iso_date_text(value):
            raise self.make_error("invalid")
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError:
            raise self.make_error("impossible") from None


class Symbol(OneValue, fields.String):
    """A ticker such as IBM, brk.b or BRK-B, normalized to upper case.

    Tested as written: unlike the fetch job, which strips them, white space
    around it makes it no ticker.
    """

    default_error_messages = {
        "not_ticker": "{bad} {verb}; it must be " + SYMBOL_RULE,
        "list": "takes exactly one ticker here, not a comma-separated list",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "," in text:
            raise self.make_error("list")
        if not is_valid_symbol(text):  # worded as TickerList words it
            raise self.make_error("not_ticker", **_refused([text], "is not a ticker", ""))
        return text.upper()


# Client input quoted in a message is cut to this many characters, so a huge
# parameter cannot make a huge answer.
QUOTED_INPUT_MAX = 40


def quoted_input(text: str) -> str:
    """Return ``text`` as a message quotes it: cut to QUOTED_INPUT_MAX characters.

    The fetch job's ``lib.alphavantage.payload.show`` differs on purpose: it
    cuts the ``repr`` of any JSON value. Here the value is always text, and
    its own characters are counted, as the dashboard counts them
    (url-state.js), so both cut an address's value alike; a caller quotes it
    or not (a parameter's name is shown bare).
    """
    if len(text) <= QUOTED_INPUT_MAX:
        return text
    return f"{text[:QUOTED_INPUT_MAX - 3]}..."


# A parameter name shown bare: one a reader sees whole and cannot take for
# the message's own punctuation ("; " between problems, ": " after a name).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]+")


def _quoted_name(name: str) -> str:
    """Return a parameter's name as a message names it: bare when plain, else quoted.

    A name left empty (``?=1``), or holding white space, control characters,
    punctuation or other scripts (``?symbol%20=IBM``, ``?a%3B%20limit=1``), is
    quoted as values are (``'symbol '``), so the name a client mistyped shows.
    """
    if _PLAIN_NAME.fullmatch(name):
        return quoted_input(name)
    return repr(quoted_input(name))


def _refused(bad: list[str], singular: str, plural: str) -> dict[str, str]:
    """Return the ``bad`` and ``verb`` of a refusal message, quoting the first _REFUSED_SHOWN."""
    quoted = ", ".join(repr(quoted_input(name)) for name in bad[:_REFUSED_SHOWN])
    if len(bad) > _REFUSED_SHOWN:
        quoted += f" and {len(bad) - _REFUSED_SHOWN} more"
    return {"bad": quoted, "verb": singular if len(bad) == 1 else plural}


class TickerList(OneValue, fields.String):
    """One or more comma-separated tickers, as a sorted tuple of distinct upper-case ones.

    Each item is tested as written: unlike the fetch job's lists
    (``lib.tickers.distinct_tickers``), a blank item (``IBM,,AAPL``) or a
    space after a comma (``IBM, AAPL``) is refused, not skipped or stripped.
    """

    default_error_messages = {
        "not_ticker": "{bad} {verb}; each must be " + SYMBOL_RULE,
        "too_many": f"takes at most {MAX_SYMBOLS} distinct tickers, got {{count}}",
        "repeated": _list_repeated("IBM,AAPL"),
    }

    def _deserialize(self, value, attr, data, **kwargs):
        items = super()._deserialize(value, attr, data, **kwargs).split(",")
        bad = [item for item in dict.fromkeys(items) if not is_valid_symbol(item)]
        if bad:
            raise self.make_error("not_ticker",
                                  **_refused(bad, "is not a ticker", "are not tickers"))
        symbols = tuple(sorted({item.upper() for item in items}))
        if len(symbols) > MAX_SYMBOLS:
            raise self.make_error("too_many", count=len(symbols))
        return symbols


class FieldList(OneValue, fields.String):
    """Comma-separated record fields or ``all``, as a tuple in the records' order."""

    choices = (*RECORD_FIELDS, ALL_FIELDS)
    default_error_messages = {
        "not_field": "{bad} {verb}; choose from " + ", ".join(RECORD_FIELDS)
                     + f", or {ALL_FIELDS}",
        "repeated": _list_repeated("open_price,volume"),
    }

    def _deserialize(self, value, attr, data, **kwargs):
        names = set(super()._deserialize(value, attr, data, **kwargs).split(","))
        bad = sorted(names.difference(self.choices))
        if bad:
            raise self.make_error("not_field", **_refused(bad, "is not a field", "are not fields"))
        if ALL_FIELDS in names:
            return RECORD_FIELDS
        return tuple(name for name in RECORD_FIELDS if name in names)


class WholeNumber(OneValue, fields.Integer):
    """An integer in plain ASCII digits: no '+', spaces, underscores or other scripts."""

    default_error_messages = {"invalid": "must be an integer",
                              "too_long": f"must have at most {MOST_DIGITS} digits"}

    def _deserialize(self, value, attr, data, **kwargs):
        number = _WHOLE_NUMBER.fullmatch(value) if isinstance(value, str) else None
        if number is None:
            raise self.make_error("invalid")
        sign, digits = number.groups()
        if len(digits) > MOST_DIGITS:
            raise self.make_error("too_long")
        return super()._deserialize(sign + digits, attr, data, **kwargs)


class QueryArgs(Schema):
    """Base of the query schemas: unknown parameters are refused, date ranges checked."""

    class Meta:
        unknown = RAISE

    @validates_schema(skip_on_field_errors=False)
    def check_range(self, data: dict[str, Any], **_kwargs: Any) -> None:
        """Refuse a start_date after the end_date, when both are given and valid.

        Whatever else is refused, so the 400 names it beside the rest.
        """
        start, end = data.get("start_date"), data.get("end_date")
        if start and end and start > end:
            raise ValidationError(
                f"must not be after end_date ({start.isoformat()} > {end.isoformat()})",
                field_name="start_date",
            )


REQUIRED: dict[str, Any] = {"required": "is required"}


def _date(description: str, example: str | None, **kwargs) -> IsoDate:
    metadata = {"description": f"{description} (YYYY-MM-DD)"}
    if example:
        metadata["example"] = example
    return IsoDate(metadata=metadata, **kwargs)


def _start_date(example: str | None = None, **kwargs) -> IsoDate:
    return _date("First day, inclusive", example, **kwargs)


def _end_date(example: str | None = None, **kwargs) -> IsoDate:
    return _date("Last day, inclusive", example, **kwargs)


def _limit(default: int, what: str) -> WholeNumber:
    return WholeNumber(
        load_default=default,
        validate=validate.Range(1, MAX_LIMIT, error=f"must be between 1 and {MAX_LIMIT}"),
        metadata={"description": f"{what} per page, 1 to {MAX_LIMIT}"},
    )


def _page() -> WholeNumber:
    return WholeNumber(
        load_default=1,
        validate=validate.Range(1, MAX_PAGE, error=f"must be between 1 and {MAX_PAGE}"),
        metadata={"description": f"Page number, 1 to {MAX_PAGE} (the largest integer JSON "
                                 "readers keep exactly); past the last page data is []"},
    )


class PriceQueryArgs(QueryArgs):
    """Filters and fields shared by GET /api/financial_data and its CSV export."""

    # The optional dates show no example in Swagger UI, which would pre-fill it:
    # "Try it out" then answers with data whatever days are stored.
    start_date = _start_date()
    end_date = _end_date()
    symbol = TickerList(metadata={
        "description": f"Ticker ({SYMBOL_RULE}), or up to {MAX_SYMBOLS} distinct "
                       "comma-separated tickers (rows of any of them); case-insensitive, "
                       "repeats ignored",
        "example": "IBM",
    })
    # "fields" is a Schema attribute, so the field takes its name from data_key.
    record_fields = FieldList(data_key="fields", load_default=DEFAULT_FIELDS, metadata={
        "description": "Comma-separated fields of each row, or `all` for every one. Keys "
                       "appear in the order " + ", ".join(RECORD_FIELDS) + " whatever the "
                       "order asked; unknown names are a 400. Default: "
                       + ", ".join(DEFAULT_FIELDS),
    })


class FinancialDataArgs(PriceQueryArgs):
    """Query parameters of GET /api/financial_data."""

    limit = _limit(DEFAULT_LIMIT, "Rows")
    page = _page()


class SymbolsArgs(QueryArgs):
    """Query parameters of GET /api/symbols."""

    limit = _limit(SYMBOLS_DEFAULT_LIMIT, "Symbols")
    page = _page()


class FetchRunsArgs(QueryArgs):
    """Query parameters of GET /api/fetch_runs."""

    limit = _limit(FETCH_RUNS_DEFAULT_LIMIT, "Runs")
    page = _page()


_PAGING = ("limit", "page")


class ExportArgs(PriceQueryArgs):
    """Query parameters of GET /api/financial_data/export: no pages, every matching row."""

    @pre_load
    def set_paging_aside(self, data: Any, **_kwargs: Any) -> Any:
        """Leave limit and page to refuse_paging, so they are not refused as unknown too."""
        if "limit" not in data and "page" not in data:
            return data
        return {name: data[name] for name in data if name not in _PAGING}

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def refuse_paging(self, _data: dict[str, Any], original_data: Any, **_kwargs: Any) -> None:
        """Say why limit and page are refused, rather than only that they are unknown.

        A validator, not the pre_load (which raising would stop the load), so
        the 400 names every other problem too.
        """
        paging = [name for name in _PAGING if name in original_data]
        if paging:
            raise ValidationError({name: ["is not accepted: the export has no pages, it "
                                          "streams every matching row"] for name in paging})


class StatisticsArgs(QueryArgs):
    """Query parameters of GET /api/statistics, all required.

    The examples, which Swagger UI pre-fills, are a month of the bundled sample.
    """

    start_date = _start_date("2023-03-01", required=True, error_messages=REQUIRED)
    end_date = _end_date("2023-03-31", required=True, error_messages=REQUIRED)
    symbol = Symbol(required=True, error_messages=REQUIRED, metadata={
        "description": f"One ticker ({SYMBOL_RULE}), case-insensitive", "example": "IBM"})


class QueryParser(FlaskParser):
    """webargs parser that reads the query string and raises InvalidParameterError."""

    DEFAULT_LOCATION = "query"

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        raise InvalidParameterError(describe_errors(error.normalized_messages()))


def describe_errors(messages: dict) -> str:
    """Flatten marshmallow messages into "param: problem; param: problem".

    Unknown parameters are named up to _REFUSED_SHOWN and the rest counted,
    as refused values are: a query of a thousand short names is no longer
    answered with a message ten times its size.
    """
    per_location = messages.get("query", messages)
    parts, unknown = [], 0
    for name in sorted(per_location):
        problems = per_location[name]
        text = "; ".join(problems) if isinstance(problems, list) else str(problems)
        if text == "Unknown field.":
            unknown += 1
            if unknown > _REFUSED_SHOWN:
                continue
            text = "is not a known parameter"
        parts.append(f"{_quoted_name(name)}: {text}")
    if unknown > _REFUSED_SHOWN:
        more = unknown - _REFUSED_SHOWN
        parts.append(f"and {more} more unknown parameter{'s' if more > 1 else ''}")
    return "; ".join(parts)


# unknown=None defers to each schema's Meta.unknown (RAISE): a typo is a 400, not ignored.
parser = QueryParser(unknown=None)


def swagger_params(schema_class: type[Schema]) -> dict:
    """Describe a schema's fields as Swagger query parameters for ``ns.doc``."""
    params = {}
    for attribute, field in schema_class().fields.items():
        name = field.data_key or attribute
        param = {"in": "query", "required": field.required,
                 "description": field.metadata.get("description", "")}
        if isinstance(field, fields.Integer):
            param["type"] = "integer"
            param["default"] = field.load_default
            param.update(_range_bounds(field))
        elif isinstance(field, (TickerList, FieldList)):
            param.update(_list_param(field))
        else:
            param["type"] = "string"
            if isinstance(field, IsoDate):
                param["format"] = "date"
            if isinstance(field, Symbol):
                param["pattern"] = f"^{SYMBOL_PATTERN}$"
        if "example" in field.metadata and "x-example" not in param:
            param["x-example"] = field.metadata["example"]
        params[name] = param
    return params


def _list_param(field: fields.Field) -> dict:
    """Describe a comma-separated parameter as a Swagger array in csv format.

    An empty value is refused, so at least one item. A ticker list counts
    distinct tickers, which Swagger cannot say: its maxItems is stricter
    than the API, never looser.
    """
    items: dict[str, Any] = {"type": "string"}
    param: dict[str, Any] = {"type": "array", "collectionFormat": "csv", "items": items,
                             "minItems": 1}
    if isinstance(field, TickerList):
        items["pattern"] = f"^{SYMBOL_PATTERN}$"
        param["maxItems"] = MAX_SYMBOLS
    if isinstance(field, FieldList):
        items["enum"] = list(field.choices)
        param["default"] = list(field.load_default)
    if "example" in field.metadata:
        param["x-example"] = field.metadata["example"].split(",")
    return param


def _range_bounds(field: fields.Field) -> dict:
    bounds = {}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            if validator.min is not None:
                bounds["minimum"] = validator.min
            if validator.max is not None:
                bounds["maximum"] = validator.max
    return bounds
