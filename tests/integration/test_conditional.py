"""Conditional GET: an ETag on every 200 GET, 304 on a match, a new tag when the data changes."""
import datetime
import json
from pathlib import Path

import pytest
from werkzeug.http import http_date
from werkzeug.wrappers import Response

import get_raw_data
from app.conditional import (
    FILE_CHANGED, PRECONDITION_FAILED, PRECONDITION_FAILED_OUTSIDE_API, add_vary,
)
from app.errors import range_not_satisfiable_message
from tests.fake_alphavantage import ALPHAVANTAGE_FIXTURES
from tests.helpers import isolated_environment

LIST_URL = "/api/financial_data?symbol=IBM&limit=3"
STATS_URL = "/api/statistics?symbol=IBM&start_date=2023-03-01&end_date=2023-03-31"
EXPORT_URL = "/api/financial_data/export?symbol=IBM"
STATIC_FILE = "/static/dashboard/dashboard.js"
IBM = ALPHAVANTAGE_FIXTURES / "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"


@pytest.mark.parametrize("path", ["/", "/api/financial_data", "/api/symbols", "/api/fetch_runs",
                                  "/api/health", "/api/swagger.json", "/api/docs", "/metrics"])
def test_every_200_get_carries_a_weak_etag_and_a_match_gets_an_empty_304(sqlite_client, path):
    """Weak: nginx gzips answers, a change of bytes the tag must not claim to rule out."""
    first = sqlite_client.get(path)
    assert first.status_code == 200
    tag = first.headers["ETag"]
    assert tag.startswith('W/"') and tag.endswith('"')
    if path != "/metrics":  # every scrape differs (durations, counts)
        assert sqlite_client.get(path).headers["ETag"] == tag, "same body, same tag"

    if path == "/metrics":
        sqlite_client.get("/api/health")  # counted: the next scrape differs
    again = sqlite_client.get(path, headers={"If-None-Match": tag})
    if path == "/metrics":
        assert again.status_code == 200
        return
    assert (again.status_code, again.data) == (304, b"")
    assert again.headers["ETag"] == tag
    assert "X-Request-ID" in again.headers and "Content-Security-Policy" in again.headers


def test_the_streamed_export_carries_a_weak_tag_and_a_match_gets_an_empty_304(sqlite_client):
    first = sqlite_client.get(EXPORT_URL)
    assert first.status_code == 200 and first.headers["ETag"].startswith('W/"')
    tag = first.headers["ETag"]
    assert sqlite_client.get(EXPORT_URL).headers["ETag"] == tag
    assert sqlite_client.get(EXPORT_URL + "&fields=all").headers["ETag"] != tag
    again = sqlite_client.get(EXPORT_URL, headers={"If-None-Match": tag})
    assert (again.status_code, again.data, again.headers["ETag"]) == (304, b"", tag)
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
    assert again.headers["Cache-Control"].startswith("public, max-age=")
    assert "X-Request-ID" in again.headers and "Content-Security-Policy" in again.headers


def test_a_weak_or_listed_tag_matches_too(sqlite_client):
    tag = sqlite_client.get("/api/financial_data").headers["ETag"]
    for header in (tag.removeprefix("W/"), f'"other", {tag}'):
        assert sqlite_client.get("/api/financial_data",
                                 headers={"If-None-Match": header}).status_code == 304
    assert sqlite_client.get("/api/financial_data",
                             headers={"If-None-Match": '"other"'}).status_code == 200
    assert sqlite_client.head("/api/financial_data",
                              headers={"If-None-Match": tag}).status_code == 304


@pytest.mark.parametrize("path, cache_control", [
    ("/api", "no-cache"), ("/api/", "no-cache"), ("/api/swagger.json", "no-cache"),
    ("/api/docs", "no-cache"), ("/swaggerui/swagger-ui.css", "no-cache"),
    ("/api/financial_data", "public, max-age=60"), (EXPORT_URL, "public, max-age=60"),
    ("/api/health", "no-store"), ("/api/nothing", "no-store"),
])
def test_every_get_under_api_says_how_it_may_be_cached(sqlite_client, path, cache_control):
    """The index and the docs change with a release: revalidated each time, a cheap 304."""
    with sqlite_client.get(path) as first:
        assert first.headers["Cache-Control"] == cache_control
    if first.status_code == 200:
        with sqlite_client.get(path, headers={"If-None-Match": first.headers["ETag"]}) as again:
            assert (again.status_code, again.headers["Cache-Control"]) == (304, cache_control)


def test_static_files_get_weak_tags_too(sqlite_client):
    """Flask tags a file strongly; nginx gzips scripts and styles as it does JSON."""
    path = "/static/dashboard/dashboard.js"
    with sqlite_client.get(path) as first:
        tag = first.headers["ETag"]
    assert tag.startswith('W/"')
    with sqlite_client.get(path, headers={"If-None-Match": tag}) as again:
        assert (again.status_code, again.headers["ETag"]) == (304, tag)


@pytest.mark.parametrize("path", ["/api/financial_data", EXPORT_URL, "/api/docs",
                                  "/static/dashboard/dashboard.js", "/api/nothing"])
def test_every_answer_varies_by_accept_encoding_its_304_too(sqlite_client, path):
    """nginx may gzip any answer, and says so only on those it may: never on a 304."""
    with sqlite_client.get(path) as first:
        assert "Accept-Encoding" in first.vary
    if first.status_code == 200:
        with sqlite_client.get(path, headers={"If-None-Match": first.headers["ETag"]}) as again:
            assert again.status_code == 304
            assert "Accept-Encoding" in again.vary


@pytest.mark.parametrize("vary, expected", [
    (None, "Accept-Encoding"), ("Origin", "Origin, Accept-Encoding"),
    ("Origin, accept-encoding", "Origin, accept-encoding"), ("*", "*"),
    ("X-Accept-Encoding-Hint", "X-Accept-Encoding-Hint, Accept-Encoding"),
])
def test_accept_encoding_joins_the_vary_an_answer_has_once(vary, expected):
    response = Response(headers={} if vary is None else {"Vary": vary})
    add_vary(response, "Accept-Encoding")
    assert response.headers.getlist("Vary") == [expected]


def test_a_star_matches_any_answer(sqlite_client):
    for path in ("/api/financial_data", "/api/health", LIST_URL):
        response = sqlite_client.get(path, headers={"If-None-Match": "*"})
        assert (response.status_code, response.data) == (304, b"")


def precondition_failed(paginated: bool, message: str = PRECONDITION_FAILED) -> dict:
    return {"data": [], "pagination": None, "info": {"error": message}} if paginated \
        else {"data": {}, "info": {"error": message}}


OUTSIDE_API = PRECONDITION_FAILED_OUTSIDE_API


@pytest.mark.parametrize("path, paginated, message", [
    ("/api/financial_data", True, PRECONDITION_FAILED), (LIST_URL, True, PRECONDITION_FAILED),
    ("/api/health", False, PRECONDITION_FAILED), ("/api/docs", False, PRECONDITION_FAILED),
    ("/", False, OUTSIDE_API), (STATIC_FILE, False, OUTSIDE_API),
    ("/swaggerui/swagger-ui.css", False, OUTSIDE_API),
])
def test_if_match_passes_only_with_a_star_and_is_a_412_otherwise(
        sqlite_client, path, paginated, message):
    """RFC 9110 13.1.1: If-Match compares strongly, which no weak tag passes: a file's neither.

    The message speaks of the API on its paths only: the dashboard and the
    files are the server's.
    """
    with sqlite_client.get(path) as first:
        tag = first.headers["ETag"]
        with sqlite_client.get(path, headers={"If-Match": "*"}) as star:
            assert (star.status_code, star.data) == (200, first.data)
    for header in ('"other"', tag, tag.removeprefix("W/")):
        for method in (sqlite_client.get, sqlite_client.head):
            failed = method(path, headers={"If-Match": header})
            assert failed.status_code == 412, (header, method)
            assert "ETag" not in failed.headers
            assert failed.headers["Cache-Control"] == "no-store"
            assert "Content-Security-Policy" in failed.headers
        assert failed.get_data() == b""
        assert sqlite_client.get(path, headers={"If-Match": header}).get_json() == (
            precondition_failed(paginated, message))


@pytest.mark.parametrize("path", ["/api/financial_data", STATIC_FILE])
def test_if_match_is_evaluated_before_if_none_match(sqlite_client, path):
    """RFC 9110 13.2.2: a failed If-Match is a 412 even when If-None-Match would be a 304."""
    with sqlite_client.get(path) as first:
        tag = first.headers["ETag"]
    with sqlite_client.get(path, headers={"If-None-Match": tag, "If-Match": '"other"'}) as both:
        assert both.status_code == 412
    with sqlite_client.get(path, headers={"If-None-Match": tag, "If-Match": "*"}) as star:
        assert (star.status_code, star.data) == (304, b"")


def test_metrics_answer_if_match_like_every_path(sqlite_client):
    assert sqlite_client.get("/metrics", headers={"If-Match": "*"}).status_code == 200
    failed = sqlite_client.get("/metrics", headers={"If-Match": '"other"'})
    assert (failed.status_code, failed.get_json()) == (412, precondition_failed(False, OUTSIDE_API))


def test_if_match_is_evaluated_before_a_range(sqlite_client):
    """RFC 9110 13.2.2: a part of a file is sent only once If-Match passes."""
    with sqlite_client.get(STATIC_FILE, headers={"Range": "bytes=0-3", "If-Match": '"other"'}
                           ) as failed:
        assert (failed.status_code, failed.get_json()) == (
            412, precondition_failed(False, OUTSIDE_API))
    with sqlite_client.get(STATIC_FILE, headers={"Range": "bytes=0-3", "If-Match": "*"}
                           ) as star:
        assert (star.status_code, len(star.data)) == (206, 4)


def test_a_file_changed_since_if_unmodified_since_is_a_412(sqlite_client):
    """RFC 9110 13.1.4 and 13.2.2: without If-Match, If-Unmodified-Since decides, before a Range."""
    with sqlite_client.get(STATIC_FILE) as first:
        last_modified, body = first.headers["Last-Modified"], first.data
    earlier = "Mon, 01 Jan 2001 00:00:00 GMT"
    for headers in ({"If-Unmodified-Since": earlier},
                    {"If-Unmodified-Since": earlier, "Range": "bytes=0-3"}):
        with sqlite_client.get(STATIC_FILE, headers=headers) as failed:
            assert (failed.status_code, failed.get_json()) == (
                412, precondition_failed(False, FILE_CHANGED)), headers
            assert failed.headers["Cache-Control"] == "no-store"
    for headers in ({"If-Unmodified-Since": last_modified},
                    {"If-Unmodified-Since": "yesterday"},  # no HTTP-date: ignored
                    {"If-Unmodified-Since": earlier, "If-Match": "*"}):  # If-Match decides
        with sqlite_client.get(STATIC_FILE, headers=headers) as passed:
            assert (passed.status_code, passed.data) == (200, body), headers


def test_a_file_the_client_has_is_a_304_even_when_it_asks_for_a_part(sqlite_client):
    """RFC 9110 13.2.2: If-None-Match and If-Modified-Since come before a Range."""
    with sqlite_client.get(STATIC_FILE) as first:
        last_modified, tag = first.headers["Last-Modified"], first.headers["ETag"]
    for validator in ({"If-Modified-Since": last_modified}, {"If-None-Match": tag}):
        with sqlite_client.get(STATIC_FILE, headers={"Range": "bytes=0-3", **validator}) as again:
            assert (again.status_code, again.data) == (304, b""), validator
            assert again.headers["ETag"] == tag
            assert "Content-Range" not in again.headers
    with sqlite_client.get(STATIC_FILE, headers={
            "Range": "bytes=0-3", "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}) as part:
        assert (part.status_code, len(part.data)) == (206, 4)


@pytest.mark.parametrize("byte_range", ["bytes=999999-", "bytes=5-1", "bytes=0-3x"])
def test_a_range_the_file_cannot_serve_is_a_416_naming_the_header_and_the_files_length(
        sqlite_client, byte_range):
    """RFC 9110 15.5.17: the 416 sends Content-Range with the file's length, to ask again by."""
    with sqlite_client.get(STATIC_FILE) as whole:
        length = len(whole.data)
    with sqlite_client.get(STATIC_FILE, headers={"Range": byte_range}) as refused:
        assert (refused.status_code, refused.get_json()) == (
            416, {"data": {}, "info": {"error": range_not_satisfiable_message(length)}})
        assert refused.headers["Content-Range"] == f"bytes */{length}"
        assert refused.headers["Cache-Control"] == "no-store"
    assert range_not_satisfiable_message(length).startswith("Range: ")


@pytest.mark.parametrize("ranges", ["pages=0-3", "items=0-3", "bytes=0-1,3-4", "bytes=0-3, 5-"])
def test_a_range_of_another_unit_or_of_several_ranges_gets_the_whole_file(sqlite_client, ranges):
    """RFC 9110 14.2: an unknown range unit MUST be ignored; ranges not sent as parts may be."""
    with sqlite_client.get(STATIC_FILE) as whole:
        body = whole.data
    with sqlite_client.get(STATIC_FILE, headers={"Range": ranges}) as answer:
        assert (answer.status_code, answer.data) == (200, body)
        assert "Content-Range" not in answer.headers
    with sqlite_client.get(STATIC_FILE, headers={"Range": "Bytes=0-3"}) as part:
        assert (part.status_code, part.data) == (206, body[:4])


@pytest.mark.parametrize("path", [STATIC_FILE, "/swaggerui/swagger-ui.css"])
def test_if_range_with_a_tag_gets_the_whole_file_and_with_its_date_the_part(sqlite_client, path):
    """RFC 9110 13.1.5: If-Range compares tags strongly, which no weak tag passes; a date may."""
    with sqlite_client.get(path) as first:
        tag, last_modified, body = first.headers["ETag"], first.headers["Last-Modified"], first.data
    for if_range in (tag, tag.removeprefix("W/"), '"other"'):
        with sqlite_client.get(path, headers={"Range": "bytes=0-3", "If-Range": if_range}
                               ) as whole:
            assert (whole.status_code, whole.data) == (200, body), if_range
            assert whole.headers["ETag"] == tag and "Content-Range" not in whole.headers
    with sqlite_client.get(path, headers={"Range": "bytes=0-3", "If-Range": last_modified}
                           ) as part:
        assert (part.status_code, part.data) == (206, body[:4])
        assert part.headers["Content-Range"] == f"bytes 0-3/{len(body)}"
    with sqlite_client.get(path, headers={
            "Range": "bytes=0-3", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"}) as changed:
        assert (changed.status_code, changed.data) == (200, body)
    with sqlite_client.get(path, headers={"Range": "bytes=0-3", "If-Range": tag,
                                          "If-None-Match": tag}) as unchanged:
        assert (unchanged.status_code, unchanged.data) == (304, b""), "13.2.2: before If-Range"


@pytest.mark.parametrize("path", [STATIC_FILE, "/swaggerui/swagger-ui.css"])
def test_if_range_with_a_date_but_the_files_own_gets_the_whole_file(sqlite_client, path):
    """RFC 9110 13.1.5: a date matches only if it is exactly the file's Last-Modified."""
    with sqlite_client.get(path) as first:
        last_modified, body = first.last_modified, first.data
    later = http_date(last_modified + datetime.timedelta(seconds=1))
    with sqlite_client.get(path, headers={"Range": "bytes=0-3", "If-Range": later}) as whole:
        assert (whole.status_code, whole.data) == (200, body)
        assert "Content-Range" not in whole.headers
    with sqlite_client.get(path, headers={"Range": "bytes=0-3",
                                          "If-Range": http_date(last_modified)}) as part:
        assert (part.status_code, part.data) == (206, body[:4])


def test_files_alone_answer_if_modified_since(sqlite_client):
    """Flask sends a file's Last-Modified; no other answer has one to compare with."""
    with sqlite_client.get(STATIC_FILE) as first:
        last_modified = first.headers["Last-Modified"]
    with sqlite_client.get(STATIC_FILE, headers={"If-Modified-Since": last_modified}) as again:
        assert (again.status_code, again.data) == (304, b"")
    with sqlite_client.get(STATIC_FILE, headers={"If-Modified-Since": last_modified,
                                                 "If-Match": "*"}) as star:
        assert (star.status_code, star.data) == (304, b""), "RFC 9110 13.2.2: * passes, then"
    for path in ("/", "/api/docs", "/api/health"):
        assert "Last-Modified" not in sqlite_client.get(path).headers, path


def test_errors_ignore_if_match(sqlite_client):
    """RFC 9110 13.2.1: preconditions only apply to what would be a 2xx."""
    for path, status in (("/api/financial_data?limit=0", 400), ("/api/nothing", 404),
                         (STATS_URL, 404)):
        assert sqlite_client.get(path, headers={"If-Match": '"other"'}).status_code == status


def test_date_preconditions_are_ignored(sqlite_client):
    """No answer has a Last-Modified, so there is no date to compare (RFC 9110 13.1.3, 13.1.4)."""
    first = sqlite_client.get("/api/financial_data")
    for headers in ({"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
                    {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}):
        again = sqlite_client.get("/api/financial_data", headers=headers)
        assert (again.status_code, again.data) == (200, first.data), headers


def test_a_304_is_logged_as_a_304(sqlite_app):
    client = sqlite_app.test_client()
    tag = client.get("/api/health").headers["ETag"]
    client.get("/api/health", headers={"If-None-Match": tag, "X-Request-ID": "revalidate"})
    log = (Path(sqlite_app.config["LOG_DIR"]) / "api.log").read_text(encoding="utf-8")
    assert " app.requests: GET /api/health 304 " in log
    assert log.count("request_id=revalidate") == 1


def test_errors_carry_no_etag(sqlite_client):
    for path in ("/api/financial_data?limit=0", "/api/nothing", STATS_URL):
        response = sqlite_client.get(path)
        assert response.status_code >= 400
        assert "ETag" not in response.headers


def test_tags_differ_between_answers(app, store_prices, make_price):
    store_prices([make_price(symbol="IBM"), make_price(symbol="AAPL")])
    client = app.test_client()
    tags = {client.get(path).headers["ETag"] for path in (
        "/api/financial_data", "/api/financial_data?symbol=IBM", "/api/financial_data?limit=1")}
    assert len(tags) == 3


def fetch_from_file(monkeypatch, app, tmp_path, payload: dict) -> None:
    """Run the fetch job on ``payload`` as a saved file, against the app's database and cache."""
    saved = tmp_path / f"ibm-{len(list(tmp_path.glob('ibm-*')))}.json"
    saved.write_text(json.dumps(payload), encoding="utf-8")
    environment = isolated_environment(
        APP_ENV="testing", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        LOG_DIR=str(tmp_path / "joblog"), CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=app.config["CACHE_REDIS_URL"])
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert get_raw_data.main(["--from-file", str(saved)]) == 0


@pytest.mark.redis
def test_a_fetch_that_stores_changes_changes_the_tag(redis_app, monkeypatch, tmp_path, capsys):
    payload = json.loads(IBM.read_text(encoding="utf-8"))
    fetch_from_file(monkeypatch, redis_app, tmp_path, payload)
    client = redis_app.test_client()
    list_tag = client.get(LIST_URL).headers["ETag"]
    stats_tag = client.get(STATS_URL).headers["ETag"]
    export_tag = client.get(EXPORT_URL).headers["ETag"]
    assert client.get(LIST_URL, headers={"If-None-Match": list_tag}).status_code == 304

    fetch_from_file(monkeypatch, redis_app, tmp_path, payload)
    assert "0 new, 0 updated" in capsys.readouterr().out
    assert client.get(LIST_URL, headers={"If-None-Match": list_tag}).status_code == 304, (
        "a fetch that changes nothing keeps the tag")
    assert client.get(EXPORT_URL, headers={"If-None-Match": export_tag}).status_code == 304

    payload["Time Series (Daily)"]["2023-03-13"]["1. open"] = "126.0001"  # within high and low
    fetch_from_file(monkeypatch, redis_app, tmp_path, payload)
    assert "0 new, 1 updated" in capsys.readouterr().out
    changed = client.get(LIST_URL, headers={"If-None-Match": list_tag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != list_tag
    assert changed.get_json()["data"][0]["open_price"] == "126.0001"
    assert client.get(STATS_URL, headers={"If-None-Match": stats_tag}).status_code == 200
    assert client.get(EXPORT_URL, headers={"If-None-Match": export_tag}).status_code == 200
