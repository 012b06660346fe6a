"""GET /api/statistics: average prices and volume of one symbol over a range."""
import datetime

from flask_restx import Resource, fields

from app.api import examples
from app.api.caching import cached_response
from app.api.docs import (
    NOT_MODIFIED, error_model, error_responses, info_model, json_example, namespace, ok_response,
    require_every_key,
)
from app.api.params import StatisticsArgs, parser, swagger_params
from app.api.serializers import statistics_record
from app.envelope import envelope, error_envelope
from app.extensions import db
from app.routes import STATISTICS_PATH
from financial.stats import compute_statistics

ns = namespace("statistics", "Averages over a date range")

PRICE_MEAN = "Exact mean of the stored days, rounded half away from zero to 2 places"
statistics_model = ns.model("Statistics", require_every_key({
    "start_date": fields.Date(description="As asked, YYYY-MM-DD"),
    "end_date": fields.Date(description="As asked, YYYY-MM-DD"),
    "symbol": fields.String(description="Ticker, upper case"),
    "average_daily_open_price": fields.Float(description=PRICE_MEAN),
    "average_daily_close_price": fields.Float(description=PRICE_MEAN),
    "average_daily_volume": fields.Integer(
        description="Exact mean of the stored days, rounded half away from zero"),
}))
statistics_response_model = ns.model("StatisticsResponse", require_every_key({
    "data": fields.Nested(statistics_model),
    "info": fields.Nested(info_model),
}))


def statistics_body(symbol: str, start_date: datetime.date, end_date: datetime.date) -> dict:
    """Return the statistics body; raises NoDataError when no day is stored."""
    stats = compute_statistics(db.session(), symbol, start_date, end_date)
    return envelope(statistics_record(stats, symbol, start_date, end_date))


# Built once: a schema is reusable and building one per request costs time.
STATISTICS_ARGS = StatisticsArgs()


@ns.route("")
class Statistics(Resource):
    @ns.doc(id="get_statistics", params=swagger_params(StatisticsArgs), responses={
        **ok_response("Averages over the stored trading days in the range",
                      statistics_response_model, examples.STATISTICS),
        "304": NOT_MODIFIED,
        "404": ("No stored day for the symbol in the range", error_model, json_example(
            error_envelope("no data for symbol IBM between 2023-04-01 and 2023-04-30",
                           paginated=False))),
        **error_responses(STATISTICS_PATH, paginated=False,
                          bad_request="end_date: is required"),
    })
    def get(self):
        """Average daily open, close and volume of a symbol over an inclusive range.

        Averages are computed exactly from the stored decimals and rounded
        half away from zero: prices to 2 decimals, volume to a whole number.
        """
        args = parser.parse(STATISTICS_ARGS, location="query")
        params = (args["symbol"], args["start_date"], args["end_date"])
        return cached_response("statistics", params, lambda: statistics_body(*params),
                               query_names=("symbol", "start_date", "end_date"))
