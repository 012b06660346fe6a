"""GET /api/statistics: average prices and volume of one symbol over a range."""
import datetime

from flask_restx import Resource, fields

from app.api.caching import cached_value
from app.api.docs import error_model, info_model, namespace
from app.api.params import StatisticsArgs, parser, swagger_params
from app.api.responses import cacheable
from app.api.serializers import statistics_record
from app.envelope import envelope
from app.extensions import db
from financial.stats import compute_statistics

ns = namespace("statistics", "Averages over a date range")

statistics_model = ns.model("Statistics", {
    "start_date": fields.String(example="2023-01-01"),
    "end_date": fields.String(example="2023-01-31"),
    "symbol": fields.String(example="IBM"),
    "average_daily_open_price": fields.Float(
        example=123.45, description="Exact mean, rounded half away from zero to 2 places"),
    "average_daily_close_price": fields.Float(
        example=234.56, description="Exact mean, rounded half away from zero to 2 places"),
    "average_daily_volume": fields.Integer(
        example=1000000, description="Exact mean, rounded half away from zero"),
})
statistics_response_model = ns.model("StatisticsResponse", {
    "data": fields.Nested(statistics_model),
    "info": fields.Nested(info_model),
})


def statistics_body(symbol: str, start_date: datetime.date, end_date: datetime.date) -> dict:
    """Return the statistics body; raises NoDataError when no day is stored."""
    stats = compute_statistics(db.session(), symbol, start_date, end_date)
    return envelope(statistics_record(stats, symbol, start_date, end_date))


# Built once: a schema is reusable and building one per request costs time.
STATISTICS_ARGS = StatisticsArgs()


@ns.route("")
class Statistics(Resource):
    @ns.doc(params=swagger_params(StatisticsArgs))
    @ns.response(200, "Averages over the stored trading days in the range",
                 statistics_response_model)
    @ns.response(400, "A parameter is missing or invalid; info.error names it",
                 error_model)
    @ns.response(404, "No stored day for the symbol in the range", error_model)
    @ns.response(503, "The database is unavailable", error_model)
    @ns.response(405, "Method not allowed: only GET (and HEAD, OPTIONS)", error_model)
    @ns.response(500, "Unexpected error", error_model)
    def get(self):
        """Average daily open, close and volume of a symbol over an inclusive range.

        Averages are computed exactly from the stored decimals and rounded
        half away from zero: prices to 2 decimals, volume to a whole number.
        """
        args = parser.parse(STATISTICS_ARGS, location="query")
        params = (args["symbol"], args["start_date"], args["end_date"])
        return cacheable(cached_value("statistics", params, lambda: statistics_body(*params)))
