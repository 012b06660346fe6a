"""GET /api/financial_data: stored daily prices, filtered and paginated."""
import datetime

from flask_restx import Resource, fields

from app.api.caching import cached_value
from app.api.docs import error_model, info_model, namespace, pagination_model
from app.api.params import FinancialDataArgs, parser, swagger_params
from app.api.responses import cacheable
from app.api.serializers import pagination, price_row
from app.envelope import envelope
from app.extensions import db
from financial.queries import count_prices, list_prices

ns = namespace("financial_data", "Daily open/close prices and volumes")

record_model = ns.model("PriceRecord", {
    "symbol": fields.String(example="IBM"),
    "date": fields.String(example="2023-01-05", description="Trading day, YYYY-MM-DD"),
    "open_price": fields.String(example="153.08", description="Exact decimal, >= 2 places"),
    "close_price": fields.String(example="154.52", description="Exact decimal, >= 2 places"),
    "volume": fields.String(example="62199013", description="Shares traded, integer string"),
})
page_model = ns.model("PricePage", {
    "data": fields.List(fields.Nested(record_model)),
    "pagination": fields.Nested(pagination_model),
    "info": fields.Nested(info_model),
})


def price_page(symbol: str | None, start_date: datetime.date | None,
               end_date: datetime.date | None, limit: int, page: int) -> dict:
    """Return the response body of one page.

    The count is cached per filter, shared by every page of it. A page past
    the last one is answered from the count alone, so an absurd page number
    never reaches the database.
    """
    count = cached_value("count", (symbol, start_date, end_date), lambda: count_prices(
        db.session(), symbol=symbol, start_date=start_date, end_date=end_date))
    offset = (page - 1) * limit
    rows = []
    if offset < count:
        rows = list_prices(db.session(), symbol=symbol, start_date=start_date,
                           end_date=end_date, limit=limit, offset=offset)
    return envelope([price_row(row) for row in rows], pagination=pagination(count, page, limit))


# Built once: a schema is reusable and building one per request costs time.
FINANCIAL_DATA_ARGS = FinancialDataArgs()


@ns.route("")
class FinancialDataList(Resource):
    @ns.doc(id="get_financial_data", params=swagger_params(FinancialDataArgs))
    @ns.response(200, "One page of rows, ordered by date then symbol", page_model)
    @ns.response(400, "A parameter is invalid; info.error names it", error_model)
    @ns.response(503, "The database is unavailable", error_model)
    @ns.response(405, "Method not allowed: only GET (and HEAD, OPTIONS)", error_model)
    @ns.response(500, "Unexpected error", error_model)
    def get(self):
        """List daily prices, oldest first, optionally by symbol and date range.

        Rows are ordered by date, then symbol. `count` is the number of rows
        matching the filters; a page past the last one returns `data: []`
        with the true pagination.
        """
        args = parser.parse(FINANCIAL_DATA_ARGS, location="query")
        params = (args.get("symbol"), args.get("start_date"), args.get("end_date"),
                  args["limit"], args["page"])
        return cacheable(cached_value("price_page", params, lambda: price_page(*params)))
