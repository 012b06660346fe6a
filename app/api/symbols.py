"""GET /api/symbols: every stored symbol, the days it spans and how fresh it is."""
import datetime

from flask import current_app
from flask_restx import Resource, fields

from app.api import examples
from app.api.caching import cached_value
from app.api.docs import (
    NOT_MODIFIED, SYMBOL_STATUS_DESCRIPTION, NullableDateTime, NullableString, error_responses,
    info_model, namespace, ok_response, pagination_model, require_every_key,
)
from app.api.params import MAX_PAGE, SymbolsArgs, parser, swagger_params
from app.api.responses import cacheable
from app.api.serializers import page_envelope, symbol_record
from app.extensions import db
from app.routes import SYMBOLS_PATH
from financial.freshness import count_symbols, list_symbols, nyse_sessions
from financial.models import SYMBOL_STATUSES
from financial.schedule import utc_clock

ns = namespace("symbols", "Stored symbols and the freshness of their data")

symbol_model = ns.model("Symbol", require_every_key({
    "symbol": fields.String(description="Ticker, upper case"),
    "first_date": fields.Date(description="Oldest stored day, YYYY-MM-DD"),
    "last_date": fields.Date(description="Newest stored day, YYYY-MM-DD"),
    "trading_days": fields.Integer(description="Stored days, first_date to last_date"),
    "sessions_behind": fields.Integer(
        description="NYSE sessions closed after last_date (a session closes at 16:00 New "
                    "York time, 13:00 on half days; weekends and NYSE holidays are no "
                    "sessions)"),
    "stale": fields.Boolean(description="sessions_behind > STALE_AFTER_SESSIONS (default 1)"),
    "last_fetched_at": NullableDateTime(
        description="UTC start (YYYY-MM-DDTHH:MM:SSZ) of the newest fetch run that tried the "
                    "symbol; null if none"),
    "last_fetch_status": NullableString(
        enum=list(SYMBOL_STATUSES),
        description=f"The symbol's outcome in that run: {SYMBOL_STATUS_DESCRIPTION}; null if "
                    "no run tried it"),
}))
symbols_page_model = ns.model("SymbolPage", require_every_key({
    "data": fields.List(fields.Nested(symbol_model),
                        description="This page's symbols, by symbol; [] past the last page"),
    "pagination": fields.Nested(pagination_model),
    "info": fields.Nested(info_model),
}))


def symbols_page(limit: int, page: int, now: datetime.datetime, stale_after: int) -> dict:
    """Return the response body of one page of symbols, judged at ``now``."""
    return page_envelope(
        count_symbols(db.session()), page, limit,
        lambda offset: list_symbols(db.session(), limit=limit, offset=offset, now=now,
                                    stale_after=stale_after),
        symbol_record)


# Built once: a schema is reusable and building one per request costs time.
SYMBOLS_ARGS = SymbolsArgs()


@ns.route("")
class SymbolList(Resource):
    @ns.doc(id="get_symbols", params=swagger_params(SymbolsArgs), responses={
        **ok_response("One page of stored symbols, ordered by symbol", symbols_page_model,
                      examples.SYMBOLS_PAGE, paginated=True),
        "304": NOT_MODIFIED,
        **error_responses(SYMBOLS_PATH, paginated=True,
                          bad_request=f"page: must be between 1 and {MAX_PAGE}"),
    })
    def get(self):
        """List the stored symbols with their span and freshness, ordered by symbol.

        `sessions_behind` counts the NYSE sessions that have closed after the
        symbol's newest stored day, so a symbol fetched after Friday's close
        is 0 behind all weekend. The last fetch is the newest fetch run that
        tried the symbol (see /api/fetch_runs).
        """
        args = parser.parse(SYMBOLS_ARGS, location="query")
        now = utc_clock()
        stale_after = current_app.config["STALE_AFTER_SESSIONS"]
        # The answer changes when a session closes, so the newest closed session
        # is part of the key: a cached page never outlives the close it was judged at.
        params = (args["limit"], args["page"], nyse_sessions().last_closed(now), stale_after)
        return cacheable(cached_value("symbols", params, lambda: symbols_page(
            args["limit"], args["page"], now, stale_after)))
