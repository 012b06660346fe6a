"""GET /api/fetch_runs: the fetch job's recorded runs, newest first, with each symbol's outcome."""
from flask_restx import Resource, fields

from app.api import examples
from app.api.caching import cached_value
from app.api.docs import (
    NOT_MODIFIED, SYMBOL_STATUS_DESCRIPTION, NullableDate, NullableDateTime, NullableString,
    error_responses, info_model, namespace, ok_response, pagination_model, require_every_key,
)
from app.api.params import FetchRunsArgs, parser, swagger_params
from app.api.responses import cacheable
from app.api.serializers import fetch_run_record, page_envelope
from app.extensions import db
from app.routes import FETCH_RUNS_PATH
from financial.models import (
    RUN_STATUSES, SYMBOL_STATUSES, TRIGGERS, FetchRun, FetchRunSymbol,
)
from financial.runs import count_runs, list_runs, symbols_of_runs

ns = namespace("fetch_runs", "The fetch job's run history")

run_symbol_model = ns.model("FetchRunSymbol", require_every_key({
    "symbol": fields.String(description="Ticker, upper case"),
    "status": fields.String(enum=list(SYMBOL_STATUSES), description=SYMBOL_STATUS_DESCRIPTION),
    "rows_fetched": fields.Integer(description="Days in the kept window"),
    "rows_new": fields.Integer(description="New days stored"),
    "rows_updated": fields.Integer(description="Stored days whose values changed"),
    "newest_date": NullableDate(description="Newest day stored, YYYY-MM-DD; null unless ok"),
    "error": NullableString(description="One-line reason; null when the symbol is ok"),
}))
run_model = ns.model("FetchRun", require_every_key({
    "id": fields.Integer(description="The run's number, increasing from 1"),
    "started_at": fields.DateTime(description="When it started, UTC (YYYY-MM-DDTHH:MM:SSZ)"),
    "finished_at": NullableDateTime(description="When it ended, UTC; null while running; never "
                                                "before started_at, even if the clock was set "
                                                "back"),
    "trigger": fields.String(enum=list(TRIGGERS),
                             description="manual (by hand, cron) or schedule (--schedule, "
                                         "its catch-up on start included)"),
    "status": fields.String(
        enum=list(RUN_STATUSES),
        description="running; ok (every symbol stored); partial (some failed); failed (none "
                    "stored); interrupted (the process died or was stopped before the end)"),
    "rows_new": fields.Integer(description="New days stored, all symbols together"),
    "rows_updated": fields.Integer(description="Stored days whose values changed, all symbols "
                                               "together"),
    "message": NullableString(description="One-line summary; null while running"),
    "symbols": fields.List(fields.Nested(run_symbol_model),
                           description="Outcome per symbol, ordered by symbol"),
}))
runs_page_model = ns.model("FetchRunPage", require_every_key({
    "data": fields.List(fields.Nested(run_model),
                        description="This page's runs, newest first; [] past the last page"),
    "pagination": fields.Nested(pagination_model),
    "info": fields.Nested(info_model),
}))


def fetch_runs_page(limit: int, page: int) -> dict:
    """Return the response body of one page of runs, newest first."""
    def runs_with_outcomes(offset: int) -> list[tuple[FetchRun, list[FetchRunSymbol]]]:
        runs = list_runs(db.session(), limit=limit, offset=offset)
        outcomes = symbols_of_runs(db.session(), [run.id for run in runs])
        return [(run, outcomes[run.id]) for run in runs]

    return page_envelope(count_runs(db.session()), page, limit, runs_with_outcomes,
                         lambda item: fetch_run_record(*item))


# Built once: a schema is reusable and building one per request costs time.
FETCH_RUNS_ARGS = FetchRunsArgs()


@ns.route("")
class FetchRunList(Resource):
    @ns.doc(id="get_fetch_runs", params=swagger_params(FetchRunsArgs), responses={
        **ok_response("One page of runs, newest first", runs_page_model,
                      examples.FETCH_RUNS_PAGE, paginated=True),
        "304": NOT_MODIFIED,
        **error_responses(FETCH_RUNS_PATH, paginated=True, bad_request="limit: must be an integer"),
    })
    def get(self):
        """List the fetch job's runs, newest first, each with its symbols' outcomes.

        Every run of `get_raw_data.py` but a dry run is recorded, by hand
        (`manual`) or by its scheduler (`schedule`). A run that waited longer
        than FETCH_LOCK_TIMEOUT for another is `failed`, naming that run.
        """
        args = parser.parse(FETCH_RUNS_ARGS, location="query")
        params = (args["limit"], args["page"])
        return cacheable(cached_value("fetch_runs", params, lambda: fetch_runs_page(*params)))
