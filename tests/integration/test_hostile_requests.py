"""Hostile requests: control characters cannot forge log lines, a bad Host is a clean 400,
a header cannot move the paths the API writes in its answers."""
import http.client
import re
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from app.extensions import db
from lib.log_setup import CONTINUATION_INDENT
from app.envelope import MISSING_HOST
from tests.helpers import LIST_ERROR, OBJECT_ERROR, assert_error, insert_synthetic_rows
from tests.servers import http_get, production_gunicorn

RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}[+-]\d{4} [A-Z]+ [\w.]+: ")


def log_text(application) -> str:
    return (Path(application.config["LOG_DIR"]) / "api.log").read_text(encoding="utf-8")


def test_crlf_and_esc_in_a_path_are_escaped_in_the_log_file(sqlite_client, sqlite_app):
    forged = "2026-01-01 00:00:00,000 CRITICAL app.errors: FORGED"
    sqlite_client.get("/api/x%0d%0a" + forged.replace(" ", "%20"))
    sqlite_client.get("/api/y%1b[2J%1b]0;title%07")
    text = log_text(sqlite_app)
    assert f"GET /api/x\\r\\n{forged} 404 " in text
    assert "GET /api/y\\x1b[2J\\x1b]0;title\\x07 404 " in text
    assert not any(RECORD_START.match(line) is None for line in text.splitlines())
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text


def test_crlf_and_esc_in_parameters_are_escaped_in_the_log_file(sqlite_client, sqlite_app):
    # Raw bytes, as a client that skips percent-encoding sends them.
    response = sqlite_client.get("/api/financial_data",
                                 query_string="symbol=\x1b[2J&limit=5\r\nFORGED: 1")
    assert response.status_code == 400
    text = log_text(sqlite_app)
    assert "GET /api/financial_data?symbol=\\x1b[2J&limit=5\\r\\nFORGED: 1 400 " in text
    assert all(RECORD_START.match(line) or line.startswith(CONTINUATION_INDENT)
               for line in text.splitlines())
    assert "\x1b" not in text and "\r" not in text


@pytest.mark.parametrize("path, shape", [
    ("/api/health", OBJECT_ERROR), ("/api/financial_data", LIST_ERROR),
    ("/api/statistics", OBJECT_ERROR), ("/api/nothing", OBJECT_ERROR),
])
@pytest.mark.parametrize("host", ["a" * 64, "a..b", ".", f"{'a' * 64}.example:8000",
                                  "ex ample", "a/b", "user@example.com", "example.com:80:80",
                                  "ex%ample", "b\xfccher.example"])
def test_a_bad_host_header_is_a_json_400_without_traceback(sqlite_client, sqlite_app, path,
                                                           shape, host, caplog):
    response = sqlite_client.get(path, headers={"Host": host})
    assert_error(response, 400, "the Host header is not a valid host name", shape)
    assert "Traceback" not in log_text(sqlite_app)
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize("host", ["api.example.com:8000", "127.0.0.1", "[::1]:8000",
                                  "stock_api:8000", "xn--bcher-kva.example", ""])
def test_a_good_host_header_still_works(sqlite_client, host):
    """RFC 3986's host: "_" (a container's name may hold one) and an empty Host pass."""
    response = sqlite_client.get("/api/health", headers={"Host": host})
    assert response.status_code == 200


def get_without_host(client, path: str, protocol: str):
    """GET ``path`` with no Host header at all, as gunicorn and `flask run` pass such a request.

    The test client always sends one (``localhost``); this environ is the
    client's, less HTTP_HOST, over ``protocol`` (SERVER_PROTOCOL).
    """
    environ = EnvironBuilder(path, environ_overrides={"SERVER_PROTOCOL": protocol}).get_environ()
    del environ["HTTP_HOST"]
    return client.open(Request(environ))


@pytest.mark.parametrize("path, shape", [
    ("/api/health", OBJECT_ERROR), ("/api/financial_data", LIST_ERROR), ("/", OBJECT_ERROR),
    ("/static/dashboard/dashboard.js", OBJECT_ERROR), ("/api/nothing", OBJECT_ERROR),
])
def test_an_http_1_1_request_without_a_host_header_is_a_json_400(sqlite_client, path, shape):
    """RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request lacking Host."""
    with get_without_host(sqlite_client, path, "HTTP/1.1") as response:
        assert_error(response, 400, MISSING_HOST, shape)


@pytest.mark.parametrize("path", ["/api/health", "/", "/static/dashboard/dashboard.js"])
def test_an_http_1_0_request_may_leave_out_the_host_header(sqlite_client, path):
    with get_without_host(sqlite_client, path, "HTTP/1.0") as response:
        assert response.status_code == 200


def status_of(port: int, path: str, headers: dict) -> int:
    """GET ``path`` from 127.0.0.1:``port``; return the status, whatever the body holds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_script_name_header_cannot_move_the_paths_gunicorn_answers_with(
        sqlite_database_url, sqlite_app, tmp_path):
    """gunicorn takes SCRIPT_NAME from a header of the addresses it trusts (FORWARDED_ALLOW_IPS,
    "*" in the compose files); nothing in front of it sets one.

    A client's would prefix every path the app writes: the Link of a page,
    stored in the answer cache and served to every client after it, and the
    OpenAPI document's basePath, kept for the worker's life. Nor may it
    reach /metrics under a path nginx routes (``/x/metrics``).
    """
    with sqlite_app.app_context():
        insert_synthetic_rows(db.session, 30)
    page = "/api/financial_data?limit=1&page=2&fields=symbol"
    hostile = {"SCRIPT_NAME": "//evil.example"}
    with production_gunicorn(tmp_path / "log", APP_ENV="production",
                             DATABASE_URL=sqlite_database_url, CACHE_TYPE="SimpleCache",
                             GUNICORN_WORKERS="1") as port:
        http_get(port, "//evil.example" + page, headers=hostile)
        http_get(port, "//evil.example/api/swagger.json", headers=hostile)
        metrics = status_of(port, "/x/metrics", headers={"SCRIPT_NAME": "/x"})
        status, headers, _ = http_get(port, page)
        spec = http_get(port, "/api/swagger.json")[2]
    assert status == 200
    assert headers["Link"].startswith('</api/financial_data?limit=1&fields=symbol&page=1>; ')
    assert "evil.example" not in headers["Link"]
    assert spec["basePath"] == "/api"
    assert metrics == 404
