"""GET /api/symbols and GET /api/fetch_runs: bodies, pagination, errors and caching."""
import datetime
from zoneinfo import ZoneInfo

import pytest
from requests.utils import parse_header_links

from app.api import symbols as symbols_api
from app.extensions import db
from financial.runs import RunRecorder, SymbolOutcome, record_refused_run

NEW_YORK = ZoneInfo("America/New_York")
START = datetime.datetime(2023, 3, 24, 22, 30)
FRIDAY, THURSDAY = datetime.date(2023, 3, 24), datetime.date(2023, 3, 23)


class Ticks:
    """A clock that moves one minute per reading, naive UTC like the history."""

    def __init__(self) -> None:
        self.next = START

    def __call__(self) -> datetime.datetime:
        now, self.next = self.next, self.next + datetime.timedelta(minutes=1)
        return now


@pytest.fixture
def judged_at(monkeypatch):
    """Set the time /api/symbols judges freshness at (New York wall time)."""
    def _set(*args) -> None:
        moment = datetime.datetime(*args, tzinfo=NEW_YORK)
        monkeypatch.setattr(symbols_api, "utc_clock", lambda: moment)
    return _set


@pytest.fixture
def two_runs(app):
    """Record a partial scheduled run, then a failed manual one and one still running."""
    clock = Ticks()
    with app.app_context():
        first = RunRecorder.open(db.session, "schedule", clock)
        first.add(SymbolOutcome("IBM", "ok", 10, 2, 1, FRIDAY))
        first.add(SymbolOutcome("AAPL", "failed", error="network failure for AAPL"))
        first.finish("partial", "1 of 2 symbols stored, 2 new rows, 1 updated")
        second = RunRecorder.open(db.session, "manual", clock)
        second.add(SymbolOutcome("AAPL", "not_fetched", error="not fetched: quota"))
        second.finish("failed", "0 of 1 symbols stored, 0 new rows, 0 updated")
        third = RunRecorder.open(db.session, "manual", clock)
        return first.run_id, second.run_id, third.run_id


def test_symbols_lists_each_stored_symbol_with_its_freshness(client, make_price, store_prices,
                                                             two_runs, judged_at):
    store_prices([make_price(symbol="IBM", date=day) for day in (THURSDAY, FRIDAY)]
                 + [make_price(symbol="AAPL", date=THURSDAY),
                    make_price(symbol="MSFT", date=FRIDAY)])
    judged_at(2023, 3, 27, 16, 5)  # Monday, after the close
    response = client.get("/api/symbols")
    assert response.status_code == 200
    assert response.get_json() == {
        "data": [
            {"symbol": "AAPL", "first_date": "2023-03-23", "last_date": "2023-03-23",
             "trading_days": 1, "sessions_behind": 2, "stale": True,
             "last_fetched_at": "2023-03-24T22:32:00Z", "last_fetch_status": "not_fetched"},
            {"symbol": "IBM", "first_date": "2023-03-23", "last_date": "2023-03-24",
             "trading_days": 2, "sessions_behind": 1, "stale": False,
             "last_fetched_at": "2023-03-24T22:30:00Z", "last_fetch_status": "ok"},
            {"symbol": "MSFT", "first_date": "2023-03-24", "last_date": "2023-03-24",
             "trading_days": 1, "sessions_behind": 1, "stale": False,
             "last_fetched_at": None, "last_fetch_status": None},
        ],
        "pagination": {"count": 3, "page": 1, "limit": 100, "pages": 1},
        "info": {"error": ""},
    }
    assert response.headers["Cache-Control"].startswith("public")


def test_symbols_are_paginated_by_symbol(client, make_price, store_prices, judged_at):
    store_prices([make_price(symbol=symbol, date=FRIDAY) for symbol in ("C", "A", "B")])
    judged_at(2023, 3, 24, 17, 0)
    first = client.get("/api/symbols?limit=2").get_json()
    assert [entry["symbol"] for entry in first["data"]] == ["A", "B"]
    assert first["pagination"] == {"count": 3, "page": 1, "limit": 2, "pages": 2}
    body = client.get("/api/symbols?limit=2&page=2").get_json()
    assert [entry["symbol"] for entry in body["data"]] == ["C"]
    assert body["pagination"] == {"count": 3, "page": 2, "limit": 2, "pages": 2}
    past = client.get("/api/symbols?limit=2&page=3").get_json()
    assert (past["data"], past["pagination"]["count"]) == ([], 3)
    assert parse_header_links(client.get("/api/symbols?limit=2").headers["Link"]) == [
        {"url": "/api/symbols?limit=2&page=1", "rel": "first"},
        {"url": "/api/symbols?limit=2&page=2", "rel": "next"},
        {"url": "/api/symbols?limit=2&page=2", "rel": "last"}]


def test_a_cached_symbols_page_is_judged_again_once_a_session_closes(
        client, make_price, store_prices, judged_at):
    store_prices([make_price(symbol="IBM", date=FRIDAY)])
    judged_at(2023, 3, 27, 15, 59)
    assert client.get("/api/symbols").get_json()["data"][0]["sessions_behind"] == 0
    store_prices([make_price(symbol="MSFT", date=FRIDAY)])
    judged_at(2023, 3, 27, 15, 59, 59)
    assert len(client.get("/api/symbols").get_json()["data"]) == 1, "served from the cache"
    judged_at(2023, 3, 27, 16, 0)
    assert [(entry["symbol"], entry["sessions_behind"])
            for entry in client.get("/api/symbols").get_json()["data"]] == [("IBM", 1),
                                                                            ("MSFT", 1)]


def test_stale_follows_the_configured_number_of_sessions(app, client, make_price, store_prices,
                                                         judged_at):
    store_prices([make_price(symbol="IBM", date=FRIDAY)])
    judged_at(2023, 3, 27, 16, 0)
    app.config["STALE_AFTER_SESSIONS"] = 0
    assert client.get("/api/symbols").get_json()["data"][0]["stale"] is True


def test_fetch_runs_lists_runs_newest_first_with_their_symbols(client, two_runs):
    first, second, third = two_runs
    response = client.get("/api/fetch_runs")
    assert response.status_code == 200
    assert response.get_json() == {
        "data": [
            {"id": third, "started_at": "2023-03-24T22:34:00Z", "finished_at": None,
             "trigger": "manual", "status": "running", "rows_new": 0, "rows_updated": 0,
             "message": None, "symbols": []},
            {"id": second, "started_at": "2023-03-24T22:32:00Z",
             "finished_at": "2023-03-24T22:33:00Z", "trigger": "manual", "status": "failed",
             "rows_new": 0, "rows_updated": 0,
             "message": "0 of 1 symbols stored, 0 new rows, 0 updated",
             "symbols": [{"symbol": "AAPL", "status": "not_fetched", "rows_fetched": 0,
                          "rows_new": 0, "rows_updated": 0, "newest_date": None,
                          "error": "not fetched: quota"}]},
            {"id": first, "started_at": "2023-03-24T22:30:00Z",
             "finished_at": "2023-03-24T22:31:00Z", "trigger": "schedule",
             "status": "partial", "rows_new": 2, "rows_updated": 1,
             "message": "1 of 2 symbols stored, 2 new rows, 1 updated",
             "symbols": [{"symbol": "AAPL", "status": "failed", "rows_fetched": 0,
                          "rows_new": 0, "rows_updated": 0, "newest_date": None,
                          "error": "network failure for AAPL"},
                         {"symbol": "IBM", "status": "ok", "rows_fetched": 10, "rows_new": 2,
                          "rows_updated": 1, "newest_date": "2023-03-24", "error": None}]},
        ],
        "pagination": {"count": 3, "page": 1, "limit": 20, "pages": 1},
        "info": {"error": ""},
    }


def test_fetch_runs_are_paginated_newest_first(app, client, two_runs):
    with app.app_context():
        refused = record_refused_run(db.session, "manual", START - datetime.timedelta(hours=1),
                                     "gave up", Ticks()).id
    body = client.get("/api/fetch_runs?limit=3&page=2").get_json()
    assert [run["id"] for run in body["data"]] == [refused]
    assert body["pagination"] == {"count": 4, "page": 2, "limit": 3, "pages": 2}
    first_page = client.get("/api/fetch_runs?limit=3").get_json()["data"]
    assert [run["id"] for run in first_page] == list(reversed(two_runs))
    assert parse_header_links(client.get("/api/fetch_runs?page=2&limit=3").headers["Link"]) == [
        {"url": "/api/fetch_runs?limit=3&page=1", "rel": "first"},
        {"url": "/api/fetch_runs?limit=3&page=1", "rel": "prev"},
        {"url": "/api/fetch_runs?limit=3&page=2", "rel": "last"}]
    past = client.get("/api/fetch_runs?limit=3&page=3").get_json()
    assert past == {"data": [], "pagination": {"count": 4, "page": 3, "limit": 3, "pages": 2},
                    "info": {"error": ""}}


def test_fetch_runs_started_in_the_same_second_page_by_id_newest_first(app, client):
    # Whole-second times tie; pages must neither repeat nor skip the tied runs.
    starts = [START + datetime.timedelta(seconds=n % 3) for n in range(12)]
    with app.app_context():
        ids = [record_refused_run(db.session, "manual", start, "gave up").id for start in starts]
    expected = [run_id for _, run_id in sorted(zip(starts, ids), reverse=True)]
    pages = [client.get(f"/api/fetch_runs?limit=5&page={page}").get_json()["data"]
             for page in (1, 2, 3)]
    assert [run["id"] for data in pages for run in data] == expected


@pytest.mark.parametrize("path", ["/api/symbols", "/api/fetch_runs"])
@pytest.mark.parametrize("query, message", [
    ("limit=0", "limit: must be between 1 and 1000"),
    ("limit=1001", "limit: must be between 1 and 1000"),
    ("limit=+5", "limit: must be an integer"),
    ("page=0", "page: must be between 1 and 9007199254740991"),
    ("page=two", "page: must be an integer"),
    ("symbol=IBM", "symbol: is not a known parameter"),
    ("page=1&page=2", "page: is given more than once"),
    ("page=1&page=2&limit=0&symbol=IBM", "limit: must be between 1 and 1000; "
     "page: is given more than once; symbol: is not a known parameter"),
])
def test_bad_parameters_are_400_in_the_list_envelope(sqlite_client, path, query, message):
    response = sqlite_client.get(f"{path}?{query}")
    assert response.status_code == 400
    assert response.get_json() == {"data": [], "pagination": None, "info": {"error": message}}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/api/symbols", "/api/fetch_runs"])
def test_other_methods_are_405_in_the_list_envelope(sqlite_client, path):
    response = sqlite_client.post(path)
    assert response.status_code == 405
    assert response.get_json()["data"] == [] and response.get_json()["pagination"] is None
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("path, limit", [("/api/symbols", 100), ("/api/fetch_runs", 20)])
def test_an_empty_history_is_an_empty_first_page(sqlite_client, path, limit):
    assert sqlite_client.get(path).get_json() == {
        "data": [], "pagination": {"count": 0, "page": 1, "limit": limit, "pages": 0},
        "info": {"error": ""}}
