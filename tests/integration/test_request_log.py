"""X-Request-ID in and out, and exactly one log line per request, tagged with it."""
import datetime
import re
import time
from pathlib import Path

import pytest

from tests.helpers import build_app, dispose_engines

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def all_log_lines(application) -> list[str]:
    log = Path(application.config["LOG_DIR"]) / "api.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def log_lines(application, needle: str) -> list[str]:
    return [line for line in all_log_lines(application) if needle in line]


@pytest.mark.parametrize("sent", [
    "abc", "4bf92f3577b34da6a3ce929d0e0e4736", "req-2023.01_05", "a" * 200,
])
def test_a_sane_request_id_is_echoed_and_logged_once(sqlite_app, sent):
    response = sqlite_app.test_client().get("/api/financial_data?limit=2",
                                            headers={"X-Request-ID": sent})
    assert response.headers["X-Request-ID"] == sent
    lines = log_lines(sqlite_app, f"request_id={sent}")
    assert len(lines) == 1
    assert re.search(rf"INFO app\.requests: GET /api/financial_data\?limit=2 200 [\d.]+ms "
                     rf"client=127\.0\.0\.1 request_id={sent}$", lines[0])


@pytest.mark.parametrize("sent", [
    "", "a" * 201, "two words", "semi;colon", "a%0Ab", "<b>", "caf\u00e9", "a/b", "x=1",
])
def test_any_other_request_id_is_replaced_by_a_new_one(sqlite_app, sent):
    response = sqlite_app.test_client().get("/api/health", headers={"X-Request-ID": sent})
    given = response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(given)
    assert len(log_lines(sqlite_app, f"request_id={given}")) == 1


def test_scripts_on_other_origins_may_read_the_id(sqlite_client):
    response = sqlite_client.get("/api/health", headers={"Origin": "https://any.example"})
    exposed = response.headers["Access-Control-Expose-Headers"].split(", ")
    assert {"X-Request-ID", "ETag", "Retry-After"} <= set(exposed)


def test_requests_without_an_id_get_distinct_ones(sqlite_client):
    ids = {sqlite_client.get("/api/health").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5 and all(GENERATED_ID.fullmatch(value) for value in ids)


def test_errors_carry_the_request_id_and_log_one_line(sqlite_database_url, tmp_path):
    application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT="4 per minute")
    client = application.test_client()
    requests = {
        "bad-input": ("GET", "/api/financial_data?limit=0", 400),
        "not-found": ("GET", "/api/nothing", 404),
        "wrong-method": ("DELETE", "/api/health", 405),
        "ok": ("GET", "/api/financial_data", 200),
        "limited": ("GET", "/api/financial_data", 429),
    }
    for request_id, (method, path, status) in requests.items():
        before = all_log_lines(application)
        response = client.open(path, method=method, headers={"X-Request-ID": request_id})
        assert (response.status_code, response.headers["X-Request-ID"]) == (status, request_id)
        new_lines = all_log_lines(application)[len(before):]
        assert len(new_lines) == 1, new_lines
        assert new_lines[0].endswith(f"request_id={request_id}")
        assert f"INFO app.requests: {method} {path} {status} " in new_lines[0]


def test_options_asterisk_is_logged_as_sent_not_as_the_path_slash_asterisk(sqlite_app):
    """OPTIONS * (the server's methods, a 204) and OPTIONS /* (an unknown path, a 404)
    are told apart in the log as nginx's access log tells them apart."""
    client = sqlite_app.test_client()
    for target, status in (("*", 204), ("/*", 404)):
        request_id = f"asterisk-{status}"
        assert client.options(target, headers={"X-Request-ID": request_id}).status_code == status
        [line] = log_lines(sqlite_app, f"request_id={request_id}")
        assert f"INFO app.requests: OPTIONS {target} {status} " in line


def test_requests_are_answered_when_the_log_file_cannot_be_written(
        sample_database_url, tmp_path, capsys):
    """A full disk under LOG_DIR: each answer as usual, one line saying so, no traceback."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "api.log").symlink_to("/dev/full")  # fails every write with ENOSPC
    application = build_app(sample_database_url, log_dir)
    client = application.test_client()
    try:
        answers = [client.get(url) for url in (
            "/api/financial_data?symbol=IBM&limit=1", "/api/health", "/api/nothing",
            "/api/statistics?symbol=IBM&start_date=2023-03-20&end_date=2023-03-24")]
    finally:
        dispose_engines(application)
    assert [answer.status_code for answer in answers] == [200, 200, 404, 200]
    assert answers[0].get_json()["data"][0]["date"] == "2022-10-31"
    err = capsys.readouterr().err
    assert err.count("cannot write the log file") == 1 and "Traceback" not in err
    assert err.count("INFO app.requests: GET ") == len(answers), "stderr keeps every line"


def test_a_streamed_export_is_logged_once_its_body_is_sent_with_the_time_it_took(
        app, store_prices, make_price, monkeypatch):
    """An export streams for as long as the client reads it: its line says so, as nginx's does."""
    store_prices([make_price(symbol="IBM", date=datetime.date(2023, 1, 3))])
    client = app.test_client()
    clock = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    response = client.get("/api/financial_data/export?symbol=IBM", buffered=False,
                          headers={"X-Request-ID": "export-1"})
    assert response.status_code == 200 and response.is_streamed
    assert log_lines(app, "request_id=export-1") == [], "logged before its body was sent"
    clock[0] += 30  # the client reads the rows for half a minute
    rows = response.get_data(as_text=True).splitlines()
    response.close()
    monkeypatch.undo()

    assert len(rows) == 2
    [line] = log_lines(app, "request_id=export-1")
    assert " app.requests: GET /api/financial_data/export?symbol=IBM 200 30000.0ms " in line
