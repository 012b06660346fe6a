"""The answers the OpenAPI document shows: what the bundled sample gives (``make run``).

Each is the answer to the request Swagger UI pre-fills for its operation
("Try it out"), on the sample that ``get_raw_data.py --sample`` loads;
tests/integration/test_openapi.py replays those requests and compares.
Times and counts that depend on when the sample was loaded are as they
were on 2026-11-29.
"""
from app.api.params import DEFAULT_LIMIT, FETCH_RUNS_DEFAULT_LIMIT, SYMBOLS_DEFAULT_LIMIT


def _price(date: str, open_price: str, close_price: str, volume: str) -> dict:
    return {"symbol": "IBM", "date": date, "open_price": open_price,
            "close_price": close_price, "volume": volume}


PRICE_PAGE = {
    "data": [
        _price("2022-10-31", "138.06", "138.29", "4915270"),
        _price("2022-11-01", "138.25", "138.20", "3590607"),
        _price("2022-11-02", "137.75", "136.83", "5365264"),
        _price("2022-11-03", "136.42", "134.47", "4442443"),
        _price("2022-11-04", "135.65", "136.96", "4177972"),
    ],
    "pagination": {"count": 100, "page": 1, "limit": DEFAULT_LIMIT, "pages": 20},
    "info": {"error": ""},
}
# The export's first lines; the file goes on to IBM's 100th day.
PRICE_CSV = ("symbol,date,open_price,close_price,volume\r\n"
             "IBM,2022-10-31,138.06,138.29,4915270\r\n"
             "IBM,2022-11-01,138.25,138.20,3590607\r\n"
             "IBM,2022-11-02,137.75,136.83,5365264\r\n")
STATISTICS = {
    "data": {"start_date": "2023-03-01", "end_date": "2023-03-31", "symbol": "IBM",
             "average_daily_open_price": 126.47, "average_daily_close_price": 126.22,
             "average_daily_volume": 6517420},
    "info": {"error": ""},
}


def _symbol(symbol: str) -> dict:
    return {"symbol": symbol, "first_date": "2022-10-31", "last_date": "2023-03-24",
            "trading_days": 100, "sessions_behind": 923, "stale": True,
            "last_fetched_at": "2026-11-29T01:12:53Z", "last_fetch_status": "ok"}


SYMBOLS_PAGE = {
    "data": [_symbol("AAPL"), _symbol("IBM")],
    "pagination": {"count": 2, "page": 1, "limit": SYMBOLS_DEFAULT_LIMIT, "pages": 1},
    "info": {"error": ""},
}


def _outcome(symbol: str) -> dict:
    return {"symbol": symbol, "status": "ok", "rows_fetched": 100, "rows_new": 100,
            "rows_updated": 0, "newest_date": "2023-03-24", "error": None}


FETCH_RUNS_PAGE = {
    "data": [{"id": 1, "started_at": "2026-11-29T01:12:53Z",
              "finished_at": "2026-11-29T01:12:53Z", "trigger": "manual", "status": "ok",
              "rows_new": 200, "rows_updated": 0,
              "message": "2 of 2 files stored, 200 new rows, 0 updated",
              "symbols": [_outcome("AAPL"), _outcome("IBM")]}],
    "pagination": {"count": 1, "page": 1, "limit": FETCH_RUNS_DEFAULT_LIMIT, "pages": 1},
    "info": {"error": ""},
}
