"""Hostile requests: control characters cannot forge log lines, a bad Host is a clean 400."""
import re
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from lib.log_setup import CONTINUATION_INDENT
from app.envelope import MISSING_HOST
from tests.helpers import LIST_ERROR, OBJECT_ERROR, assert_error

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
