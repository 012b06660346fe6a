"""GET /api/financial_data: stored daily prices, filtered and paginated, or exported as CSV."""
import datetime

from flask import Response, current_app, request
from flask_restx import Resource, fields
from sqlalchemy import Engine
from werkzeug.exceptions import PreconditionFailed

from app.api import examples
from app.api.caching import cached_response, cached_value
from app.api.docs import (
    ETAG_HEADER, NOT_MODIFIED, NullableString, error_responses, info_model, namespace, ok_response,
    pagination_model, require_every_key,
)
from app.api.export import (
    CONTENT_DISPOSITION, EXPORT_BIND, EXPORTS_BUSY, ROW_COUNT_HEADER, ExportQuery, count_rows,
    csv_head_response, csv_response, export_tag, take_export_slot,
)
from app.api.params import ExportArgs, FinancialDataArgs, parser, swagger_params
from app.api.responses import cache_control
from app.api.serializers import page_envelope, price_row
from app.conditional import PRECONDITION_FAILED, if_match_fails
from app.envelope import RETRY_AFTER_SECONDS, json_response
from app.errors import error_response, note_database_read
from app.extensions import db
from app.metrics import record_export_refused
from app.routes import EXPORT_PATH, FINANCIAL_DATA_PATH
from financial.queries import count_listed_prices, list_prices
from financial.runs import data_version

ns = namespace("financial_data", "Daily prices and volumes: pages of JSON, or a CSV export")

PRICE_TEXT = "Exact decimal, >= 2 places"
ADJUSTED_ONLY = "null unless fetched with TIME_SERIES_DAILY_ADJUSTED"
record_model = ns.model("PriceRecord", {
    "symbol": fields.String(description="Ticker, upper case"),
    "date": fields.Date(description="Trading day, YYYY-MM-DD"),
    "open_price": fields.String(description=PRICE_TEXT),
    "high_price": NullableString(description=f"{PRICE_TEXT}; null for days stored before "
                                             "it was kept"),
    "low_price": NullableString(description=f"{PRICE_TEXT}; null for days stored before "
                                            "it was kept"),
    "close_price": fields.String(description=f"{PRICE_TEXT}; the raw close"),
    "adjusted_close_price": NullableString(
        description=f"{PRICE_TEXT}, rounded to 4 places; {ADJUSTED_ONLY}"),
    "volume": fields.String(description="Shares traded, integer string"),
    "dividend_amount": NullableString(description=f"{PRICE_TEXT}; {ADJUSTED_ONLY}"),
    "split_coefficient": NullableString(
        description=f"Exact ratio, trailing zeros dropped, >= 1 place; {ADJUSTED_ONLY}"),
})
page_model = ns.model("PricePage", require_every_key({
    "data": fields.List(fields.Nested(record_model),
                        description="This page's rows, by date then symbol; [] past the last page"),
    "pagination": fields.Nested(pagination_model),
    "info": fields.Nested(info_model),
}))
csv_model = fields.String(description="CSV, header row first, lines ending in CRLF")


def price_page(symbols: tuple[str, ...] | None, start_date: datetime.date | None,
               end_date: datetime.date | None, record_fields: tuple[str, ...], limit: int,
               page: int) -> dict:
    """Return the response body of one page.

    The count is cached per filter, shared by every page of it.
    """
    count = cached_value("count", (symbols, start_date, end_date), lambda: count_listed_prices(
        db.session(), symbols=symbols, start_date=start_date, end_date=end_date))
    return page_envelope(
        count, page, limit,
        lambda offset: list_prices(db.session(), symbols=symbols, start_date=start_date,
                                   end_date=end_date, fields=record_fields, limit=limit,
                                   offset=offset),
        lambda row: price_row(row, record_fields))


# Built once: a schema is reusable and building one per request costs time.
FINANCIAL_DATA_ARGS = FinancialDataArgs()
EXPORT_ARGS = ExportArgs()


@ns.route("")
class FinancialDataList(Resource):
    @ns.doc(id="get_financial_data", params=swagger_params(FinancialDataArgs), responses={
        **ok_response("One page of rows, ordered by date then symbol", page_model,
                      examples.PRICE_PAGE, paginated=True),
        "304": NOT_MODIFIED,
        **error_responses(FINANCIAL_DATA_PATH, paginated=True,
                          bad_request="limit: must be between 1 and 1000"),
    })
    def get(self):
        """List daily prices, oldest first, optionally by symbols and date range.

        Rows are ordered by date, then symbol. `count` is the number of rows
        matching the filters; a page past the last one returns `data: []`
        with the true pagination. `fields` picks the keys of each row
        (default: symbol, date, open_price, close_price, volume; `all` for
        every one); a value not known for a day is `null`.
        """
        args = parser.parse(FINANCIAL_DATA_ARGS, location="query")
        params = (args.get("symbol"), args.get("start_date"), args.get("end_date"),
                  args["record_fields"], args["limit"], args["page"])
        return cached_response("price_page", params, lambda: price_page(*params))


@ns.route(EXPORT_PATH)
class FinancialDataExport(Resource):
    @ns.doc(id="export_financial_data", params=swagger_params(ExportArgs), responses={
        "200": ("Every matching row as CSV (text/csv; charset=utf-8), header row first, as "
                "an attachment (financial_data.csv)", csv_model,
                {"examples": {"text/csv": examples.PRICE_CSV}, "headers": {
                    **ETAG_HEADER, ROW_COUNT_HEADER: {
                        "type": "integer",
                        "description": "The rows the body holds, its header row aside: a body "
                                       "with fewer was cut short"},
                    "Content-Disposition": {
                        "type": "string",
                        "description": f"Always {CONTENT_DISPOSITION}: a browser saves the "
                                       "body as that file"}}}),
        "304": NOT_MODIFIED,
        **error_responses(
            FINANCIAL_DATA_PATH + EXPORT_PATH, paginated=True,
            bad_request="limit: is not accepted: the export has no pages, it streams every "
                        "matching row",
            also_unavailable="; or the server is streaming as many exports as it may at once "
                             "(EXPORT_CONCURRENCY per process)"),
    })
    @ns.produces(["text/csv", "application/json"])
    def get(self):
        """Download every matching row as a CSV file, ordered like the list.

        Takes the list's filters and `fields`, but no `limit` or `page`. The
        header row holds the field names; values are written as in the JSON
        (exact decimal strings) and a null is an empty cell; lines end in
        CRLF (RFC 4180). Up to `EXPORT_MAX_ROWS` rows (default 1,000,000) are
        streamed; more matching rows are a 400 asking to narrow the filters.
        Errors are JSON envelopes, sent before any CSV. A database failure
        during the transfer ends the response early, incomplete. HEAD answers
        the same headers, `X-Row-Count` included, from a count alone.
        """
        args = parser.parse(EXPORT_ARGS, location="query")
        query = ExportQuery(symbols=args.get("symbol"), start_date=args.get("start_date"),
                            end_date=args.get("end_date"), fields=args["record_fields"],
                            max_rows=current_app.config["EXPORT_MAX_ROWS"])
        # The body is streamed, so its tag cannot hash it: a weak tag names the
        # query and the data version instead, and a match is answered unread.
        session = db.session()
        tag = export_tag(query, data_version(session, query.symbols))
        note_database_read()  # a logged outage ends here, with no transaction left to show it
        session.close()  # the export counts and reads through a connection of its own
        engine = db.engines.get(EXPORT_BIND, db.engine)
        not_modified = _precondition_answer(engine, query, tag)
        if not_modified:
            return not_modified
        if request.method == "HEAD":
            response = csv_head_response(engine, query, cache_control())
        else:
            release_slot = take_export_slot()
            if release_slot is None:  # answered, not raised: RESTX logs a raised 5xx's traceback
                record_export_refused()
                return json_response(*error_response(
                    503, EXPORTS_BUSY, {"Retry-After": RETRY_AFTER_SECONDS}))
            response = csv_response(engine, query, cache_control(), release_slot)
        response.set_etag(tag, weak=True)
        return response


def _precondition_answer(engine: Engine, query: ExportQuery, tag: str) -> Response | None:
    """Return the 304 the preconditions call for, or None to export; raise their 412.

    Raises InvalidParameterError, as the export would, when a precondition
    that asks whether the export exists (any If-Match, ``If-None-Match: *``)
    decides the answer: only an export within the row cap exists. An
    answer that goes on to the export is left to count its rows, once.
    """
    if_none_match = request.if_none_match
    precondition_fails = if_match_fails()
    if not (precondition_fails or if_none_match.contains_weak(tag)):
        return None
    if request.if_match or if_none_match.star_tag:
        count_rows(engine, query)
    if precondition_fails:
        raise PreconditionFailed(PRECONDITION_FAILED)
    return _not_modified(tag)


def _not_modified(tag: str) -> Response:
    """Return the export's 304 for its weak ``tag``."""
    not_modified = Response(status=304, headers=cache_control())
    not_modified.set_etag(tag, weak=True)
    return not_modified
