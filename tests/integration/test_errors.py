"""Every row of the README's error table answers with the JSON envelope."""
import json
import re
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from app import SCHEMA_REVISION
from app.api.health import PROBE_SECONDS
from app.api.params import MAX_PAGE, _WHOLE_NUMBER
from app.extensions import db
from financial.monthly_sums import refresh_monthly_sums
from tests.helpers import (
    LIST_ERROR, OBJECT_ERROR, assert_error, build_app, migrate_database,
)

RULE = "1 to 16 letters, digits, '.' or '-', starting with a letter or digit"


@pytest.mark.parametrize("query, message", [
    ("start_date=2023-13-01", "start_date: is not a valid calendar date"),
    ("start_date=2023-02-30", "start_date: is not a valid calendar date"),
    ("end_date=23-01-01", "end_date: must be a date in YYYY-MM-DD format"),
    ("end_date=2023-1-5", "end_date: must be a date in YYYY-MM-DD format"),
    ("start_date=", "start_date: must be a date in YYYY-MM-DD format"),
    ("start_date=2023-02-01&end_date=2023-01-01",
     "start_date: must not be after end_date (2023-02-01 > 2023-01-01)"),
    ("symbol=IB%20M", f"symbol: 'IB M' is not a ticker; each must be {RULE}"),
    ("symbol=" + "A" * 17, f"symbol: '{'A' * 17}' is not a ticker; each must be {RULE}"),
    ("symbol=%27%3B--", f"symbol: \"';--\" is not a ticker; each must be {RULE}"),
    ("limit=0", "limit: must be between 1 and 1000"),
    ("limit=1001", "limit: must be between 1 and 1000"),
    ("limit=ten", "limit: must be an integer"),
    ("limit=2.5", "limit: must be an integer"),
    ("page=0", f"page: must be between 1 and {MAX_PAGE}"),
    ("page=-1", f"page: must be between 1 and {MAX_PAGE}"),
    # Past the largest integer JSON readers keep exactly: echoed, it would read back wrong.
    ("page=9007199254740992", f"page: must be between 1 and {MAX_PAGE}"),
    ("symbl=IBM", "symbl: is not a known parameter"),
    ("=1", "'': is not a known parameter"),
    # A parameter the endpoint does not take is refused as unknown, however often given.
    ("=1&=2", "'': is not a known parameter"),
    ("symbl=IBM&symbl=AAPL", "symbl: is not a known parameter"),
    # A name a reader could not see whole, or could take for the message's own
    # punctuation, is quoted as a value is.
    ("symbol%20=IBM", "'symbol ': is not a known parameter"),
    ("%20=1", "' ': is not a known parameter"),
    ("%00=1", "'\\x00': is not a known parameter"),
    ("a%3B%20limit=1", "'a; limit': is not a known parameter"),
    ("sym%C3%A9bol=1", "'sym\u00e9bol': is not a known parameter"),
    ("symbol[]=IBM", "symbol[]: is not a known parameter"),
    ("limit=0&colour=red&colour=blue",
     "colour: is not a known parameter; limit: must be between 1 and 1000"),
    ("limit=0&page=0",
     f"limit: must be between 1 and 1000; page: must be between 1 and {MAX_PAGE}"),
    ("symbol=IBM%0A", f"symbol: 'IBM\\n' is not a ticker; each must be {RULE}"),
    ("start_date=2023-01-01%0A", "start_date: must be a date in YYYY-MM-DD format"),
    ("start_date=%D9%A2%D9%A0%D9%A2%D9%A3-01-01",
     "start_date: must be a date in YYYY-MM-DD format"),
    ("limit=%2B5", "limit: must be an integer"),
    ("limit=%205", "limit: must be an integer"),
    ("limit=1_0", "limit: must be an integer"),
    ("limit=%D9%A1%D9%A2", "limit: must be an integer"),
    ("page=1e3", "page: must be an integer"),
    # Past the 4,300 digits Python converts: still a number, refused as too long.
    ("page=" + "9" * 4301, "page: must have at most 4300 digits"),
    ("page=" + "9" * 4300, f"page: must be between 1 and {MAX_PAGE}"),
    ("limit=-" + "9" * 5000, "limit: must have at most 4300 digits"),
    # What requests, axios or URLSearchParams send for a list of tickers.
    ("symbol=IBM&symbol=AAPL",
     "symbol: is given more than once; a list is one comma-separated value (symbol=IBM,AAPL)"),
    ("limit=5&limit=6&page=1&page=1",
     "limit: is given more than once; page: is given more than once"),
    # A repeat is named beside every other problem, sorted by name as they are.
    ("symbol=IBM&symbol=AAPL&limit=0&x=1",
     "limit: must be between 1 and 1000; symbol: is given more than once; a list is one "
     "comma-separated value (symbol=IBM,AAPL); x: is not a known parameter"),
    # A repeated parameter's values are not read as if one were given alone.
    ("limit=0&limit=ten&page=0",
     f"limit: is given more than once; page: must be between 1 and {MAX_PAGE}"),
    ("start_date=2023-02-01&end_date=2023-01-01&limit=0",
     "limit: must be between 1 and 1000; "
     "start_date: must not be after end_date (2023-02-01 > 2023-01-01)"),
    ("start_date=2023-02-30&fields=all&fields=volume&colour=red&colour=blue",
     "colour: is not a known parameter; fields: is given more than once; a list is one "
     "comma-separated value (fields=open_price,volume); start_date: is not a valid calendar "
     "date"),
    ("start_date=%FF", "start_date: must be a date in YYYY-MM-DD format"),
    ("n" * 40 + "=1", "n" * 40 + ": is not a known parameter"),
    ("n" * 41 + "=1", "n" * 37 + "...: is not a known parameter"),
])
def test_financial_data_rejects_bad_parameters(sqlite_client, query, message):
    assert_error(sqlite_client.get(f"/api/financial_data?{query}"), 400, message, LIST_ERROR)


def test_a_number_of_many_leading_zeros_is_refused(sqlite_client):
    response = sqlite_client.get(f"/api/financial_data?page={'0' * 20_000}x")
    assert_error(response, 400, "page: must be an integer", LIST_ERROR)


def test_leading_zeros_are_read_once_not_once_per_split():
    """Stripping leading zeros must not try every split of them (a quadratic match).

    The pattern tries each split of a run of zeros between its ``0*`` and
    the digits after it; the digits' part must read at most one character
    of the zeros at each, as "[1-9][0-9]*|0" does, where "[0-9]+" would read
    all the rest: the characters read over every split count the work.
    """
    shape = re.fullmatch(r"\(-\?\)0\*(\(.+\))", _WHOLE_NUMBER.pattern)
    assert shape, f"the pattern is no longer sign, zeros, digits: {_WHOLE_NUMBER.pattern}"
    digits = re.compile(shape[1])
    zeros = 2_000
    refused = "0" * zeros + "x"
    read = sum(len(match[0]) for split in range(zeros + 1)
               if (match := digits.match(refused, split)))
    assert read <= zeros
    assert _WHOLE_NUMBER.fullmatch(refused) is None
    assert _WHOLE_NUMBER.fullmatch("-" + "0" * zeros + "7").groups() == ("-", "7")


@pytest.mark.parametrize("query, message", [
    ("", "end_date: is required; start_date: is required; symbol: is required"),
    ("symbol=IBM&start_date=2023-01-01", "end_date: is required"),
    ("symbol=IBM&start_date=2023-01-31&end_date=2023-01-01",
     "start_date: must not be after end_date (2023-01-31 > 2023-01-01)"),
    ("symbol=&start_date=2023-01-01&end_date=2023-01-31",
     f"symbol: '' is not a ticker; it must be {RULE}"),
    ("symbol=%00&start_date=2023-01-01&end_date=2023-01-31",
     f"symbol: '\\x00' is not a ticker; it must be {RULE}"),
    ("symbol=" + "A" * 50 + "&start_date=2023-01-01&end_date=2023-01-31",
     f"symbol: '{'A' * 37}...' is not a ticker; it must be {RULE}"),
    ("symbol=IBM&start_date=2023-02-29&end_date=2023-03-01",
     "start_date: is not a valid calendar date"),
    ("symbol=IBM&start_date=2023-01-01&end_date=2023-01-31&limit=5",
     "limit: is not a known parameter"),
    ("symbol=IBM&start_date=2023-01-01&end_date=2023-01-31&limit=5&limit=6",
     "limit: is not a known parameter"),
    ("symbol=I%20B&start_date=2023-01-31&end_date=2023-01-01",
     "start_date: must not be after end_date (2023-01-31 > 2023-01-01); "
     f"symbol: 'I B' is not a ticker; it must be {RULE}"),
    # A repeated required parameter is named as repeated, not also as missing.
    ("symbol=IBM&symbol=AAPL",
     "end_date: is required; start_date: is required; symbol: is given more than once"),
    ("symbol=IBM&start_date=2023-01-01&start_date=2023-01-02&end_date=2023-13-01&limit=5",
     "end_date: is not a valid calendar date; limit: is not a known parameter; "
     "start_date: is given more than once"),
])
def test_statistics_rejects_bad_parameters(sqlite_client, query, message):
    assert_error(sqlite_client.get(f"/api/statistics?{query}"), 400, message, OBJECT_ERROR)


FIELD_CHOICES = ("symbol, date, open_price, high_price, low_price, close_price, "
                 "adjusted_close_price, volume, dividend_amount, split_coefficient, or all")
MANY_SYMBOLS = ",".join(f"S{n}" for n in range(101))


@pytest.mark.parametrize("query, message", [
    ("fields=colour", f"fields: 'colour' is not a field; choose from {FIELD_CHOICES}"),
    ("fields=volume,Open_Price,high,volume",
     f"fields: 'Open_Price', 'high' are not fields; choose from {FIELD_CHOICES}"),
    ("fields=", f"fields: '' is not a field; choose from {FIELD_CHOICES}"),
    ("fields=all,", f"fields: '' is not a field; choose from {FIELD_CHOICES}"),
    ("symbol=IBM,,AAPL", f"symbol: '' is not a ticker; each must be {RULE}"),
    ("symbol=IBM,%20AAPL,B%20C", f"symbol: ' AAPL', 'B C' are not tickers; each must be {RULE}"),
    (f"symbol={MANY_SYMBOLS}", "symbol: takes at most 100 distinct tickers, got 101"),
    ("symbol=" + ",".join(f"B%20{n}" for n in range(8)),
     f"symbol: 'B 0', 'B 1', 'B 2', 'B 3', 'B 4' and 3 more are not tickers; each must be {RULE}"),
    ("symbol=" + ",".join(f"B%20{n}" for n in range(5)),
     f"symbol: 'B 0', 'B 1', 'B 2', 'B 3', 'B 4' are not tickers; each must be {RULE}"),
    ("symbol=IBM&fields=all&fields=volume",
     "fields: is given more than once; a list is one comma-separated value "
     "(fields=open_price,volume)"),
])
@pytest.mark.parametrize("path", ["/api/financial_data", "/api/financial_data/export"])
def test_fields_and_symbol_lists_are_checked(sqlite_client, path, query, message):
    assert_error(sqlite_client.get(f"{path}?{query}"), 400, message, LIST_ERROR)


@pytest.mark.parametrize("query, message", [
    ("limit=10", "limit: is not accepted: the export has no pages, it streams every "
                 "matching row"),
    ("symbol=IBM&page=2&limit=5",
     "limit: is not accepted: the export has no pages, it streams every matching row; "
     "page: is not accepted: the export has no pages, it streams every matching row"),
    ("symbl=IBM", "symbl: is not a known parameter"),
    ("start_date=2023-02-01&end_date=2023-01-01",
     "start_date: must not be after end_date (2023-02-01 > 2023-01-01)"),
    ("limit=10&limit=20", "limit: is not accepted: the export has no pages, it streams every "
                          "matching row"),
    # limit and page are named beside every other problem, sorted by name as they are.
    ("x=1&limit=1", "limit: is not accepted: the export has no pages, it streams every "
                    "matching row; x: is not a known parameter"),
    ("page=2&symbol=IBM&symbol=AAPL&fields=colour&end_date=2023-1-5",
     "end_date: must be a date in YYYY-MM-DD format; "
     f"fields: 'colour' is not a field; choose from {FIELD_CHOICES}; "
     "page: is not accepted: the export has no pages, it streams every matching row; "
     "symbol: is given more than once; a list is one comma-separated value (symbol=IBM,AAPL)"),
    ("limit=10&start_date=2023-02-01&end_date=2023-01-01",
     "limit: is not accepted: the export has no pages, it streams every matching row; "
     "start_date: must not be after end_date (2023-02-01 > 2023-01-01)"),
])
def test_export_refuses_pages_and_bad_parameters(sqlite_client, query, message):
    assert_error(sqlite_client.get(f"/api/financial_data/export?{query}"), 400, message,
                 LIST_ERROR)


def test_statistics_refuses_a_symbol_list(sqlite_client):
    response = sqlite_client.get(
        "/api/statistics?symbol=IBM,AAPL&start_date=2023-01-01&end_date=2023-01-31")
    assert_error(response, 400, "symbol: takes exactly one ticker here, not a comma-separated "
                                "list", OBJECT_ERROR)


def test_unknown_path_is_a_json_404(sqlite_client):
    assert_error(sqlite_client.get("/api/nothing"), 404,
                 "no endpoint at /api/nothing; the API is documented at /api/docs", OBJECT_ERROR)
    assert_error(sqlite_client.get("/elsewhere"), 404,
                 "no endpoint at /elsewhere; the API is documented at /api/docs", OBJECT_ERROR)


@pytest.mark.parametrize("path", ["/api//financial_data?symbol=IBM", "/api///statistics",
                                  "/api/financial_data//export"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_path_with_doubled_slashes_is_a_json_404_not_a_redirect(sqlite_client, path, method):
    response = sqlite_client.open(path, method=method)
    route = path.partition("?")[0]
    assert_error(response, 404, f"no endpoint at {route}; the API is documented at /api/docs",
                 OBJECT_ERROR)
    assert "Location" not in response.headers


@pytest.mark.parametrize("path", ["/static/dashboard/dashboard.js/",
                                  "/static/dashboard//dashboard.js", "/swaggerui/swagger-ui.css/"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_a_file_path_with_a_trailing_or_doubled_slash_is_a_json_404(sqlite_client, path, method):
    """Files are served as routes are: only at their exact path (the file's view merged them)."""
    with sqlite_client.get(path.rstrip("/").replace("//", "/")) as exact:
        assert exact.status_code == 200
    response = sqlite_client.open(path, method=method)
    response.close()
    assert response.status_code == 404
    if method == "GET":
        assert_error(response, 404, f"no endpoint at {path}; the API is documented at /api/docs",
                     OBJECT_ERROR)


@pytest.mark.parametrize("path", ["/static/dashboard/./dashboard.js",
                                  "/static/./dashboard/dashboard.js",
                                  "/static/dashboard/%2E/dashboard.js",
                                  "/static/dashboard/../dashboard/dashboard.js",
                                  "/swaggerui/./swagger-ui.css"])
def test_a_file_path_with_a_dot_segment_is_a_json_404(sqlite_client, path):
    """As /api/./health is: a file is served at its exact path only."""
    response = sqlite_client.get(path)
    response.close()
    assert_error(response, 404, f"no endpoint at {path.replace('%2E', '.')}; the API is "
                 "documented at /api/docs", OBJECT_ERROR)


@pytest.mark.parametrize("path", ["//api/health", "///api/financial_data", "//",
                                  "//static/dashboard/dashboard.js", "//metrics"])
@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
def test_a_path_starting_with_doubled_slashes_is_a_json_404_too(sqlite_client, sqlite_app, path,
                                                                method):
    """Werkzeug's routing merges them whatever merge_slashes says: //api/health was served.

    The test client would read //api as a host, so the path is set as a server sets it.
    """
    response = sqlite_client.open("/", method=method, environ_overrides={"PATH_INFO": path})
    assert_error(response, 404, f"no endpoint at {path}; the API is documented at /api/docs",
                 OBJECT_ERROR)
    log = (Path(sqlite_app.config["LOG_DIR"]) / "api.log").read_text(encoding="utf-8")
    assert f" app.requests: {method} {path} 404 " in log


@pytest.mark.parametrize("path, shape", [
    ("/api/financial_data", LIST_ERROR), ("/api/financial_data/export", LIST_ERROR),
    ("/api/statistics", OBJECT_ERROR), ("/api/health", OBJECT_ERROR),
    ("/api/symbols", LIST_ERROR), ("/api/fetch_runs", LIST_ERROR), ("/metrics", OBJECT_ERROR),
])
@pytest.mark.parametrize("method", ["DELETE", "POST", "PATCH"])
def test_wrong_method_is_a_json_405_naming_it_and_the_allowed_ones(sqlite_client, path, shape,
                                                                   method):
    response = sqlite_client.open(path, method=method)
    assert_error(response, 405, f"method {method} is not allowed on {path}; allowed: GET, "
                                "HEAD, OPTIONS", shape)
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("path", ["/api/financial_data", "/api/financial_data/export",
                                  "/api/statistics", "/api/health", "/api/symbols",
                                  "/api/fetch_runs", "/api/docs", "/api", "/metrics", "/",
                                  "/static/dashboard/dashboard.js", "/swaggerui/swagger-ui.css"])
def test_options_is_an_empty_204_with_allow(sqlite_client, path):
    response = sqlite_client.options(path)
    assert (response.status_code, response.data) == (204, b"")
    assert "Content-Type" not in response.headers
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_options_asterisk_is_an_empty_204_with_allow(sqlite_client):
    """RFC 9110 9.3.7: the server's methods. Routed as a path, "*" was a 404."""
    response = sqlite_client.options("*")
    assert (response.status_code, response.data) == (204, b"")
    assert "Content-Type" not in response.headers
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert sqlite_client.get("*").status_code == 404, "only OPTIONS has an asterisk-form"


@pytest.mark.parametrize("path", ["/static/dashboard/nothing.js", "/static/dashboard",
                                  "/swaggerui/nothing.css", "/api/nothing", "/nothing"])
def test_options_on_a_missing_file_is_a_json_404_as_on_any_unknown_path(sqlite_client, path):
    """Flask answers OPTIONS without the view, which alone knows that the file is missing."""
    response = sqlite_client.options(path)
    assert_error(response, 404, f"no endpoint at {path}; the API is documented at /api/docs",
                 OBJECT_ERROR)
    assert response.get_data(as_text=True) == sqlite_client.get(path).get_data(as_text=True)


def test_options_asks_no_view_but_a_files(tmp_path):
    """Only a file's view knows whether its path exists; any other view would run for nothing."""
    application = build_app(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path / "log")
    asked = []

    @application.get("/things/<name>")
    def thing(name: str) -> dict:
        asked.append(name)
        return {"name": name}

    response = application.test_client().options("/things/a")
    assert (response.status_code, response.data, asked) == (204, b"", [])
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_every_json_body_is_written_alike(sqlite_client):
    """Errors Flask answers outside RESTX (unknown paths) look like RESTX's answers."""
    not_found = sqlite_client.get("/api/nothing").get_data(as_text=True)
    bad = sqlite_client.get("/api/statistics").get_data(as_text=True)
    assert not_found == ('{"data": {}, "info": {"error": "no endpoint at /api/nothing; the API is '
                         'documented at /api/docs"}}\n')
    assert bad.startswith('{"data": {}, "info": {"error": "end_date: is required')
    assert sqlite_client.get("/nothing").headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/api", "/api/"])
def test_the_api_root_points_to_the_documentation(sqlite_client, path):
    response = sqlite_client.get(path)
    assert response.status_code == 200
    assert response.get_json() == {"data": {
        "documentation": "/api/docs", "openapi": "/api/swagger.json",
        "endpoints": ["/api/fetch_runs", "/api/financial_data", "/api/financial_data/export",
                      "/api/health", "/api/statistics", "/api/symbols"]},
        "info": {"error": ""}}


@pytest.fixture
def own_sqlite_app(tmp_path):
    """An app on a database of its own, free to be damaged by the test."""
    url = f"sqlite:///{tmp_path / 'own.db'}"
    migrate_database(url, tmp_path / "log")
    application = build_app(url, tmp_path / "log")
    yield application
    with application.app_context():
        db.engine.dispose()


def _execute(application, statement: str) -> None:
    with application.app_context():
        db.session.execute(text(statement))
        db.session.commit()


@pytest.mark.parametrize("path", ["/api/financial_data", "/api/financial_data/export"])
def test_unexpected_error_is_a_generic_500_logged_with_details(own_sqlite_app, caplog, path):
    # A corrupted row (text where an integer count of 1/10000 belongs) cannot be read.
    _execute(own_sqlite_app, "INSERT INTO financial_data "
                             "(symbol, date, open_price, close_price, volume) VALUES "
                             "('IBM', '2023-01-03', 'garbage /work/x.py', 1, 1)")
    with own_sqlite_app.app_context():  # counted, as the fetch job keeps the monthly sums
        refresh_monthly_sums(db.session())
        db.session.commit()
    response = own_sqlite_app.test_client().get(path, headers={"X-Request-ID": "req-500"})
    assert_error(response, 500, "internal server error", LIST_ERROR)
    # The ID the client can quote finds the details, not only the request's own line.
    assert caplog.text.count(f"unhandled ValueError on GET {path} request_id=req-500") == 1
    assert "Traceback" in caplog.text


@pytest.mark.parametrize("path, shape", [
    ("/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-01-02", OBJECT_ERROR),
    ("/api/financial_data/export", LIST_ERROR),
])
def test_database_error_mid_request_is_a_503(own_sqlite_app, path, shape):
    _execute(own_sqlite_app, "ALTER TABLE financial_data RENAME TO moved_away")
    response = own_sqlite_app.test_client().get(path)
    assert_error(response, 503, "the database is unavailable, please retry later", shape)
    assert response.headers["Retry-After"] == "5"


@pytest.fixture
def unreachable_app(tmp_path):
    """An app whose MySQL server does not exist (nothing listens on port 1)."""
    return build_app("mysql+pymysql://api:hunter2@127.0.0.1:1/financial", tmp_path / "log")


@pytest.mark.parametrize("path, shape", [
    ("/api/financial_data", LIST_ERROR),
    ("/api/financial_data/export?fields=all", LIST_ERROR),
    ("/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-01-02", OBJECT_ERROR),
])
def test_unreachable_database_is_a_503_without_secrets(unreachable_app, path, shape):
    response = unreachable_app.test_client().get(path)
    assert_error(response, 503, "the database is unavailable, please retry later", shape)
    assert "hunter2" not in response.get_data(as_text=True)


def test_an_outage_is_one_log_line_not_one_per_request(unreachable_app, tmp_path):
    client = unreachable_app.test_client()
    statuses = [client.get("/api/financial_data").status_code for _ in range(4)]
    assert statuses == [503] * 4
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count("ERROR app.errors: database unavailable: OperationalError 2003") == 1
    assert log.count(" GET /api/financial_data 503 ") == 4, "each request still has its line"


def test_health_is_503_when_the_database_is_unreachable(unreachable_app):
    response = unreachable_app.test_client().get("/api/health")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json() == {
        "status": "unavailable", "database": "unreachable", "schema": None,
        "info": {"error": "the database is unavailable, please retry later"}}
    log_file = Path(unreachable_app.config["LOG_DIR"]) / "api.log"
    assert "health check failed: OperationalError" in log_file.read_text()
    assert "hunter2" not in log_file.read_text()


def test_a_polled_failing_health_check_is_one_log_line_not_one_per_poll(unreachable_app):
    client = unreachable_app.test_client()
    assert [client.get("/api/health").status_code for _ in range(4)] == [503] * 4
    log = (Path(unreachable_app.config["LOG_DIR"]) / "api.log").read_text(encoding="utf-8")
    assert log.count("ERROR app.api.health: health check failed: OperationalError 2003") == 1
    assert log.count(" GET /api/health 503 ") == 4, "each check still has its request line"


def test_health_is_200_and_never_cached(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "schema": "current",
                                   "info": {"error": ""}}
    assert response.headers["Cache-Control"] == "no-store"


MIGRATE = "run the migrations (flask --app app db upgrade)"


def test_a_database_errors_503_leaves_the_session_rolled_back(empty_database_url, tmp_path):
    """As a 500 does: a caller that holds one app context across requests (a CLI command)
    shares their session, which must not carry the failed transaction on."""
    application = build_app(empty_database_url, tmp_path / "log")
    with application.app_context():
        assert_error(application.test_client().get("/api/financial_data"), 503,
                     "the database is unavailable, please retry later", LIST_ERROR)
        assert not db.session().in_transaction()
        db.engine.dispose()


def test_health_names_a_missing_schema_and_the_log_says_to_migrate(empty_database_url, tmp_path):
    application = build_app(empty_database_url, tmp_path / "log")
    client = application.test_client()
    response = client.get("/api/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "ok",
                                   "schema": "missing",
                                   "info": {"error": f"the database has no schema: {MIGRATE}"}}
    assert_error(client.get("/api/financial_data"), 503,
                 "the database is unavailable, please retry later", LIST_ERROR)
    client.get("/api/health")
    log = (tmp_path / "log" / "api.log").read_text()
    assert log.count(f"health check failed: the database has no schema: {MIGRATE}") == 1
    assert ("hint: the schema is missing or behind the migrations: run them (flask --app app db "
            "upgrade)") in log
    assert "Traceback" not in log
    with application.app_context():
        db.engine.dispose()


def test_a_health_check_that_passes_again_says_so_once(empty_database_url, tmp_path,
                                                       health_clock):
    application = build_app(empty_database_url, tmp_path / "log")
    client = application.test_client()
    assert [client.get("/api/health").status_code for _ in range(3)] == [503] * 3
    with application.app_context():
        upgrade()
    health_clock[0] += PROBE_SECONDS
    assert [client.get("/api/health").status_code for _ in range(2)] == [200] * 2
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    back = [line for line in log.splitlines() if "health check passes again" in line]
    assert len(back) == 1, back
    assert re.search(r"WARNING app\.api\.health: health check passes again after \d+s; "
                     r"checks answered 503 since the last 'health check failed' line: 2$",
                     back[0]), back[0]
    with application.app_context():
        db.engine.dispose()


def test_health_names_a_schema_behind_the_migrations(empty_database_url, tmp_path,
                                                     health_clock):
    application = build_app(empty_database_url, tmp_path / "log")
    with application.app_context():
        upgrade(revision="0002")
    response = application.test_client().get("/api/health")
    assert response.status_code == 503
    assert response.get_json()["info"]["error"] == (
        f"the database schema is behind, at revision 0002: {MIGRATE}")
    assert response.get_json()["schema"] == "behind"
    with application.app_context():
        upgrade()
        db.session.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        db.session.commit()
    health_clock[0] += PROBE_SECONDS
    response = application.test_client().get("/api/health")
    assert response.status_code == 200, "a newer release's schema still serves"
    assert response.get_json()["schema"] == "newer"
    with application.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("unknown, named", [
    (["0099"], "revision 0099"),
    (["0099", "00aa"], "revisions 0099 and 00aa"),
])
def test_health_names_a_mixed_schema_history_and_how_to_correct_it(
        empty_database_url, tmp_path, unknown, named):
    """A revision the migrations know beside one they do not is no newer release's schema:
    the fetch job and the container's start stop on it, so health must not pass."""
    application = build_app(empty_database_url, tmp_path / "log")
    with application.app_context():
        upgrade()
        for revision in unknown:
            db.session.execute(text("INSERT INTO alembic_version VALUES (:revision)"),
                               {"revision": revision})
        db.session.commit()
    response = application.test_client().get("/api/health")
    message = (f"the database's migration history is mixed: revision {SCHEMA_REVISION}, which "
               f"the migrations know, beside {named}, which they do not; new containers and the "
               "fetch job stop on it: correct the alembic_version table, so that it holds "
               "one revision")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json() == {"status": "unavailable", "database": "ok",
                                   "schema": "mixed", "info": {"error": message}}
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count(f"health check failed: {message}") == 1
    with application.app_context():
        db.engine.dispose()


def test_error_bodies_are_valid_json_objects(sqlite_client):
    assert isinstance(json.loads(sqlite_client.get("/api/financial_data?page=x").data), dict)


@pytest.mark.parametrize("query, message", [
    ("x" * 5000 + "=1", "x" * 37 + "...: is not a known parameter"),
    ("symbol=" + "A" * 5000, "symbol: '" + "A" * 37 + "...' is not a ticker; each must be "),
    ("fields=" + "z" * 5000, "fields: '" + "z" * 37 + "...' is not a field"),
])
def test_huge_input_is_quoted_cut_short(sqlite_client, query, message):
    response = sqlite_client.get(f"/api/financial_data?{query}")
    assert response.status_code == 400
    assert response.get_json()["info"]["error"].startswith(message)
    assert len(response.data) < 1000


def test_many_unknown_parameters_are_named_up_to_five_and_the_rest_counted(sqlite_client):
    """A query of many short names is answered in a message of its own size at most."""
    names = [f"{first}{second}" for first in "abcdefghij" for second in "abcdefghij"]
    response = sqlite_client.get("/api/financial_data?limit=0&" + "&".join(names))
    assert_error(response, 400, "aa: is not a known parameter; ab: is not a known parameter; "
                 "ac: is not a known parameter; ad: is not a known parameter; "
                 "ae: is not a known parameter; limit: must be between 1 and 1000; "
                 "and 95 more unknown parameters", LIST_ERROR)
    assert len(response.data) < 1000


def test_one_unknown_parameter_past_the_five_named_is_counted_in_the_singular(sqlite_client):
    response = sqlite_client.get("/api/financial_data?a=1&b=1&c=1&d=1&e=1&f=1")
    assert_error(response, 400, "a: is not a known parameter; b: is not a known parameter; "
                 "c: is not a known parameter; d: is not a known parameter; "
                 "e: is not a known parameter; and 1 more unknown parameter", LIST_ERROR)
