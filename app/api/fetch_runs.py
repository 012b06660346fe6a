"""GET /api/fetch_runs: the fetch job's recorded runs, newest first, with each symbol's outcome."""
from flask_restx import Resource, fields

from app.api.caching import cached_value
from app.api.docs import error_model, info_model, namespace, pagination_model
from app.api.params import FetchRunsArgs, parser, swagger_params
from app.api.responses import cacheable
from app.api.serializers import fetch_run_record, pagination
from app.envelope import envelope
from app.extensions import db
from financial.runs import count_runs, list_runs, symbols_of_runs

ns = namespace("fetch_runs", "The fetch job's run history")

run_symbol_model = ns.model("FetchRunSymbol", {
    "symbol": fields.String(example="IBM"),
    "status": fields.String(example="ok", description="ok (stored), failed, or not_fetched "
                                                      "(skipped after a spent quota, a "
                                                      "rejected key or a stop)"),
    "rows_fetched": fields.Integer(example=10, description="Days in the kept window"),
    "rows_new": fields.Integer(example=1),
    "rows_updated": fields.Integer(example=0),
    "newest_date": fields.String(example="2023-03-24",
                                 description="Newest day stored; null unless ok"),
    "error": fields.String(example=None, description="One-line reason; null unless it failed"),
})
run_model = ns.model("FetchRun", {
    "id": fields.Integer(example=42),
    "started_at": fields.String(example="2023-03-24T22:30:01Z", description="UTC"),
    "finished_at": fields.String(example="2023-03-24T22:30:04Z",
                                 description="UTC; null while running"),
    "trigger": fields.String(example="schedule", description="manual or schedule"),
    "status": fields.String(
        example="ok", description="running; ok (every symbol stored); partial (some failed); "
                                  "failed (none stored); interrupted (the process died or "
                                  "was stopped before the end)"),
    "rows_new": fields.Integer(example=2),
    "rows_updated": fields.Integer(example=0),
    "message": fields.String(example="2 of 2 symbols stored, 2 new rows, 0 updated",
                             description="One-line summary; null while running"),
    "symbols": fields.List(fields.Nested(run_symbol_model),
                           description="Outcome per symbol, ordered by symbol"),
})
runs_page_model = ns.model("FetchRunPage", {
    "data": fields.List(fields.Nested(run_model)),
    "pagination": fields.Nested(pagination_model),
    "info": fields.Nested(info_model),
})


def fetch_runs_page(limit: int, page: int) -> dict:
    """Return the response body of one page of runs, newest first."""
    count = count_runs(db.session())
    offset = (page - 1) * limit
    runs = list_runs(db.session(), limit=limit, offset=offset) if offset < count else []
    outcomes = symbols_of_runs(db.session(), [run.id for run in runs])
    return envelope([fetch_run_record(run, outcomes[run.id]) for run in runs],
                    pagination=pagination(count, page, limit))


# Built once: a schema is reusable and building one per request costs time.
FETCH_RUNS_ARGS = FetchRunsArgs()


@ns.route("")
class FetchRunList(Resource):
    @ns.doc(id="get_fetch_runs", params=swagger_params(FetchRunsArgs))
    @ns.response(200, "One page of runs, newest first", runs_page_model)
    @ns.response(400, "A parameter is invalid; info.error names it", error_model)
    @ns.response(503, "The database is unavailable", error_model)
    @ns.response(405, "Method not allowed: only GET (and HEAD, OPTIONS)", error_model)
    @ns.response(500, "Unexpected error", error_model)
    def get(self):
        """List the fetch job's runs, newest first, each with its symbols' outcomes.

        Every run of `get_raw_data.py` but a dry run is recorded, by hand
        (`manual`) or by its scheduler (`schedule`). A run that waited longer
        than FETCH_LOCK_TIMEOUT for another is `failed`, naming that run.
        """
        args = parser.parse(FETCH_RUNS_ARGS, location="query")
        params = (args["limit"], args["page"])
        return cacheable(cached_value("fetch_runs", params, lambda: fetch_runs_page(*params)))
