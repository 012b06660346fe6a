"""conf/nginx.conf run by a real nginx in front of gunicorn (conf/gunicorn.conf.py).

The production compose runs nginx:1.30-alpine; here Debian's nginx runs a copy
of the file changed only where this machine differs: the upstream's address
(no Docker DNS, so no "resolve"), the port and the paths of the pid and logs;
and with CORS_ORIGINS filled in, as the image's entrypoint does.
"""
import gzip
import http.client
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from app.extensions import db
from conf.settings import PROJECT_ROOT
from tests.helpers import free_port, insert_synthetic_rows, wait_for
from tests.integration.test_openapi import OPERATIONS, assert_matches_schema
from tests.servers import production_gunicorn

NGINX_CONF = PROJECT_ROOT / "conf" / "nginx.conf"
SECURITY_HEADERS = ("X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options",
                    "Content-Security-Policy")


def local_config(upstream_port: int, port: int, folder: Path, cors_origins: str = "") -> str:
    """Return conf/nginx.conf as it can run on this machine, and fail if it changed shape.

    ``cors_origins`` fills in the placeholder the image's entrypoint fills with
    the API's CORS_ORIGINS (envsubst, docker-compose.prod.yml).
    """
    text = NGINX_CONF.read_text(encoding="utf-8")
    replacements = {
        "${CORS_ORIGINS}": cors_origins,
        "server api:8000 resolve;": f"server 127.0.0.1:{upstream_port};",
        "resolver 127.0.0.11 valid=10s ipv6=off;": "",
        "listen 80 default_server;": f"listen 127.0.0.1:{port} default_server;",
        "pid /var/run/nginx.pid;": f"pid {folder}/nginx.pid;",
        "error_log /var/log/nginx/error.log warn;": f"error_log {folder}/error.log warn;",
        "access_log /var/log/nginx/access.log main;": f"access_log {folder}/access.log main;",
    }
    for old, new in replacements.items():
        assert old in text, f"conf/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    # Temporary files of a non-root nginx: in the test's folder.
    temp_paths = "".join(f"    {name}_temp_path {folder}/{name};\n"
                         for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return text.replace("http {\n", "http {\n" + temp_paths, 1)


class Upstream(NamedTuple):
    """gunicorn's port and the folder of its logs (the API's api.log)."""

    port: int
    log_dir: Path


@contextmanager
def gunicorn(database_url: str, log_dir: Path, hops: int, **settings: str) -> Iterator[Upstream]:
    """gunicorn as production runs it, trusting ``hops`` proxies in front."""
    with production_gunicorn(log_dir, APP_ENV="production", DATABASE_URL=database_url,
                             GUNICORN_WORKERS="1", TRUSTED_PROXY_HOPS=str(hops),
                             **settings) as port:
        yield Upstream(port, log_dir)


@pytest.fixture(scope="module")
def upstream(sqlite_database_url, tmp_path_factory) -> Iterator[Upstream]:
    """gunicorn behind nginx alone (TRUSTED_PROXY_HOPS=1, as the production compose has it)."""
    with gunicorn(sqlite_database_url, tmp_path_factory.mktemp("gunicorn"), hops=1) as server:
        yield server


def start_nginx(upstream_port: int, folder: Path, cors_origins: str = "") -> Iterator[int]:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed: apt-get install nginx (.ci/run installs it)")
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(local_config(upstream_port, port, folder, cors_origins), encoding="utf-8")
    checked = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([nginx, "-c", str(config), "-g", "daemon off;"],
                               stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _accepts(port), f"nginx on port {port}")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()


@pytest.fixture(scope="module")
def nginx_port(upstream, tmp_path_factory) -> Iterator[int]:
    """nginx with the project's configuration in front of gunicorn."""
    yield from start_nginx(upstream.port, tmp_path_factory.mktemp("nginx"))


@pytest.fixture
def nginx_without_api(tmp_path) -> Iterator[int]:
    """nginx whose upstream port nobody listens on: the API is down."""
    yield from start_nginx(free_port(), tmp_path)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def raw_answer(port: int, request_line: bytes,
               headers: bytes = b"") -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send a request line and header lines as they are (http.client refuses malformed
    ones), with Host and Connection: close; return the answer, every header line kept."""
    request = (request_line + b"\r\nHost: example.com\r\n" + headers
               + b"Connection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, response.msg, response.read()


def raw_request(port: int, request_line: bytes,
                headers: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """As raw_answer, the headers as a dict."""
    status, message, body = raw_answer(port, request_line, headers)
    return status, dict(message.items()), body


def assert_envelope(headers: dict[str, str], body: bytes) -> str:
    """Check an answer is the API's JSON envelope with its headers; return its error."""
    assert headers["Content-Type"] == "application/json"
    for header in SECURITY_HEADERS:
        assert header in headers, header
    assert headers["X-Request-ID"]
    return json.loads(body)["info"]["error"]


def test_requests_pass_with_their_id_and_nginx_names_no_version(nginx_port):
    status, headers, body = raw_request(nginx_port, b"GET /api/health HTTP/1.1",
                                        b"X-Request-ID: trace-42\r\n")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    assert headers["X-Request-ID"] == "trace-42"
    assert headers["Server"] == "nginx"


@pytest.mark.parametrize("request_line, status", [
    (b"GET /api/financial_data?symbol=" + b"A" * 5000 + b" HTTP/1.1", 414),
    (b"GET /api/financial_data?symbol=" + b"A" * 9000 + b" HTTP/1.1", 414),
    (b"G@T /api/health HTTP/1.1", 400),
    (b"GET api/health HTTP/1.1", 400),
    (b"TRACE /api/health HTTP/1.1", 405),
    (b"GET /api/financial_data?symbol=\xc3\x89 HTTP/1.1", 400),
    (b"GET /api/he\xffalth HTTP/1.1", 400),
    (b"GET /api/health HTTP/2.0", 505),
    (b"GET /__nginx_error/400 HTTP/1.1", 404),
], ids=["URL over 4 KB", "URL over 8 KB", "malformed method", "URI without its slash", "TRACE",
        "raw UTF-8 in the query", "raw byte in the path", "HTTP/2.0 in plain text",
        "an error page's internal URI"])
def test_what_nginx_refuses_itself_is_the_envelope(nginx_port, request_line, status):
    answer = raw_request(nginx_port, request_line)
    assert answer[0] == status
    assert assert_envelope(*answer[1:])
    # The error pages share one location: a header of another page's must not leak in.
    assert ("Allow" in answer[1]) == (status == 405)
    assert "Retry-After" not in answer[1]
    assert answer[1]["Cache-Control"] == "no-store"


LIST_PATHS = ["/api/financial_data", "/api/financial_data/export", "/api/symbols",
              "/api/fetch_runs", "/api/financial_data/"]


@pytest.mark.parametrize("path, shape", [
    *((path, {"data": [], "pagination": None}) for path in LIST_PATHS),
    ("/api/statistics", {"data": {}}),
    ("/api/financial_datax", {"data": {}}),
])
def test_what_nginx_refuses_itself_has_the_envelope_of_the_path_asked(nginx_port, path, shape):
    """As the API's own errors: a list's "data" is [] with a null "pagination"."""
    status, headers, body = raw_request(nginx_port, f"GET {path}?symbol=".encode()
                                        + b"\xc3\x89 HTTP/1.1")
    message = "malformed request, or headers over 8 KB"
    assert status == 400
    assert assert_envelope(headers, body) == message
    assert json.loads(body) == {**shape, "info": {"error": message}}


def request_line_of(length: int, path: bytes = b"/api/symbols") -> bytes:
    """Return a GET of ``path`` whose request line is ``length`` bytes long (its CRLF aside),
    with a query parameter the API does not know."""
    prefix = b"GET " + path + b"?limit=1&x="
    return prefix + b"a" * (length - len(prefix) - len(b" HTTP/1.1")) + b" HTTP/1.1"


def test_the_longest_request_line_is_4094_bytes_and_a_longer_one_a_414_of_its_path(nginx_port):
    """The limit 4 KB buffers set, now checked once nginx read the headers (for their
    Origin), so the 414 knows the path too: a list's envelope on a list's path."""
    status, headers, body = raw_request(nginx_port, request_line_of(4094))
    assert (status, assert_envelope(headers, body)) == (400, "x: is not a known parameter")
    status, headers, body = raw_request(nginx_port, request_line_of(4095))
    assert status == 414
    assert assert_envelope(headers, body) == "the URL is too long (at most 4 KB)"
    assert json.loads(body) == {"data": [], "pagination": None,
                                "info": {"error": "the URL is too long (at most 4 KB)"}}


@pytest.mark.parametrize("path", [b"/metrics", b"/__nginx_error/404", b"/__nginx_error/414",
                                  b"/__nginx_error/503", b"/%5F_nginx_error/400"])
def test_a_url_over_4_kb_is_the_same_414_on_the_paths_nginx_answers_404(nginx_port, path):
    """/metrics and the error pages' internal URIs, nginx's own 404s, are refused for the
    URL's length first, as every other path is, with the same answer."""
    assert raw_request(nginx_port, request_line_of(4094, path))[0] == 404
    status, headers, body = raw_request(nginx_port, request_line_of(4095, path))
    other_status, other_headers, other_body = raw_request(
        nginx_port, request_line_of(4095, b"/api/statistics"))
    assert (status, body) == (other_status, other_body) == (
        414, b'{"data": {}, "info": {"error": "the URL is too long (at most 4 KB)"}}')
    varying = ("Date", "X-Request-ID")
    assert {name: value for name, value in headers.items() if name not in varying} == {
        name: value for name, value in other_headers.items() if name not in varying}


def test_a_header_up_to_8_kb_reaches_the_api_and_a_longer_one_is_the_envelope(nginx_port):
    status, headers, body = raw_request(nginx_port, b"GET /api/health HTTP/1.1",
                                        b"X-Long: " + b"a" * 8000 + b"\r\n")
    assert status == 200, body
    status, headers, body = raw_request(nginx_port, b"GET /api/health HTTP/1.1",
                                        b"X-Long: " + b"a" * 8200 + b"\r\n")
    assert status == 400
    assert assert_envelope(headers, body) == "malformed request, or headers over 8 KB"


def test_forwarded_for_lines_nginx_joins_into_one_reach_the_api(nginx_port, upstream):
    """nginx passes a client's X-Forwarded-For lines on as one, its own entry appended:
    past gunicorn's limit of a field, gunicorn answered its own HTML 400."""
    lines = b"".join(b"X-Forwarded-For: " + b"%d.0.0.1, " % number * 650 + b"10.0.0.1\r\n"
                     for number in range(10, 14))
    assert len(lines) > 3 * 8192
    status, headers, body = raw_request(nginx_port, b"GET /api/health HTTP/1.1",
                                        lines + b"X-Request-ID: joined-lines\r\n")
    assert status == 200, body
    assert logged_client(upstream.log_dir, "joined-lines") == "127.0.0.1"


def test_a_body_over_the_limit_is_the_envelope(nginx_port):
    status, headers, body = raw_request(nginx_port, b"POST /api/health HTTP/1.1",
                                        b"Content-Length: 2000000\r\n")
    assert status == 413
    assert assert_envelope(headers, body) == "the request body is too large"


@pytest.mark.parametrize("header", [b"X-Forwarded-Ssl: on", b"X-Forwarded-Protocol: ssl"])
def test_a_scheme_header_a_client_writes_itself_counts_for_nothing(nginx_port, header):
    """gunicorn believes only X-Forwarded-Proto, which nginx sets: the others, passed on as
    sent, contradicted it, and gunicorn answered its own HTML 400."""
    status, headers, body = raw_request(nginx_port, b"GET /api/health HTTP/1.1",
                                        header + b"\r\n")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_a_method_nginx_refuses_itself_names_the_allowed_ones(nginx_port):
    status, headers, body = raw_request(nginx_port, b"TRACE /api/health HTTP/1.1")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD, OPTIONS"
    assert assert_envelope(headers, body).endswith("the API answers GET, HEAD and OPTIONS")


def test_an_unsupported_transfer_encoding_is_the_envelope(nginx_port):
    status, headers, body = raw_request(nginx_port, b"POST /api/health HTTP/1.1",
                                        b"Transfer-Encoding: gzip, chunked\r\n")
    assert status == 501
    assert assert_envelope(headers, body)


def test_many_headers_within_nginx_limits_reach_the_api(nginx_port):
    """gunicorn would refuse more than 100 fields (its default) with an HTML page of its own."""
    fields = b"".join(b"X-F%d: 1\r\n" % number for number in range(300))
    status, headers, body = raw_request(nginx_port, b"GET /api/health HTTP/1.1", fields)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"


def test_a_list_repeated_up_to_the_longest_request_line_passes_nginx(nginx_port, sqlite_app):
    """The API ignores repeated tickers; its Link header must not repeat them.

    Written back as sent, with each comma three bytes, the links of a list
    repeated up to nginx's 4 KB request line outgrew the answer headers
    nginx takes from the API (proxy_buffer_size), and nginx answered 503.
    """
    with sqlite_app.app_context():
        insert_synthetic_rows(db.session, 300)
    prefix = b"GET /api/financial_data?limit=1&page=2&fields=symbol,date&symbol="
    repeats = (4000 - len(prefix) - len(b" HTTP/1.1")) // len(b"S001,")
    request_line = prefix + b",".join([b"S001"] * repeats) + b" HTTP/1.1"
    assert 3990 < len(request_line) < 4000
    status, headers, body = raw_request(nginx_port, request_line)
    assert status == 200, body
    assert json.loads(body)["data"] == [{"symbol": "S001", "date": "2000-01-04"}]
    assert headers["Link"] == ", ".join(
        f'</api/financial_data?limit=1&fields=symbol%2Cdate&symbol=S001&page={page}>; '
        f'rel="{rel}"' for rel, page in (("first", 1), ("prev", 1), ("next", 3), ("last", 3)))


def test_metrics_are_not_served_through_nginx(nginx_port):
    status, headers, body = raw_request(nginx_port, b"GET /metrics HTTP/1.1")
    assert status == 404
    assert assert_envelope(headers, body).startswith("no endpoint at this path")


def test_a_path_starting_with_doubled_slashes_reaches_the_api_as_sent_and_is_a_404(nginx_port):
    """nginx merges slashes to pick a location but passes the URI on as sent (proxy_pass names
    no URI), so the API, which routes //api/health nowhere, answers it."""
    status, headers, body = raw_request(nginx_port, b"GET //api/health HTTP/1.1")
    assert status == 404
    assert assert_envelope(headers, body) == (
        "no endpoint at //api/health; the API is documented at /api/docs")


def test_the_api_down_is_a_503_with_retry_after(nginx_without_api):
    status, headers, body = raw_request(nginx_without_api, b"GET /api/health HTTP/1.1")
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert "Allow" not in headers
    assert assert_envelope(headers, body) == "the API is unavailable, please retry later"


@pytest.mark.parametrize("path", list(OPERATIONS))
@pytest.mark.parametrize("status, request_line", [
    ("503", b"GET /api%s HTTP/1.1"),
    ("400", b"GET /api%s?symbol=\xc3\x89 HTTP/1.1"),
    ("405", b"TRACE /api%s HTTP/1.1"),
])
def test_what_nginx_answers_itself_is_what_the_api_documents(
        nginx_without_api, path, status, request_line):
    """The OpenAPI document's schema and headers of that status, as a client's code reads them."""
    answer = raw_request(nginx_without_api, request_line % path.encode())
    documented = OPERATIONS[path]["responses"][status]
    assert answer[0] == int(status)
    assert_envelope(*answer[1:])
    assert set(documented.get("headers", {})) <= set(answer[1]), documented.get("headers")
    assert_matches_schema(json.loads(answer[2]), documented["schema"])


def logged_client(log_dir: Path, request_id: str) -> str:
    """Return the client address the API logged for the request ``request_id``."""
    line = next(line for line in (log_dir / "api.log").read_text().splitlines()
                if f"request_id={request_id}" in line)
    return line.split(" client=")[1].split()[0]


def forwarded_headers(request_id: str) -> bytes:
    return b"X-Forwarded-For: 198.51.100.7\r\nX-Request-ID: " + request_id.encode() + b"\r\n"


@pytest.mark.parametrize("path, shape", [
    ("/api/financial_data?symbol=IBM", {"data": [], "pagination": None}),
    ("/api/symbols", {"data": [], "pagination": None}),
    ("/api/statistics", {"data": {}}),
])
def test_the_api_down_is_the_envelope_its_endpoint_documents(nginx_without_api, path, shape):
    """The OpenAPI document's 503 of a list holds "data": [] and "pagination": null."""
    status, headers, body = raw_request(nginx_without_api, f"GET {path} HTTP/1.1".encode())
    assert status == 503
    assert json.loads(body) == {**shape, "info": {
        "error": "the API is unavailable, please retry later"}}


# Requests the API answers with an error, a list's or another's, whose path nginx's
# $uri would read otherwise: %-escapes, doubled slashes, dot segments, queries.
ENCODED_TARGETS = [
    "/api/%73ymbols?limit=0", "/api/%53ymbols?limit=0", "/api%2Fsymbols?limit=0",
    "/api%2fsymbols?limit=0", "/api/financial%5fdata?limit=0", "/api/%66etch_runs?limit=0",
    "/api/financial_data%2Fexport?limit=0", "/api/symbols/?limit=0", "/api/symbols//",
    "/api/symbols%2F", "/api/financial_data/export/?limit=0", "/api//symbols",
    "//api/symbols", "/api/./symbols", "/api/%2e/symbols", "/api/x/../symbols",
    "/api/symbols/.", "/api/symbols;x", "/api/symbols%3Flimit=0", "/API/symbols",
    "/api/symbolsx", "/api/statistics?next=/api/symbols", "/api/symbols?next=/api/x",
    "/api/symbols/#x?limit=0", "/api/%73ymbols%23x", "/api/health/", "/api/health/#x",
]


def test_the_api_down_answers_in_the_envelope_the_api_gives_the_path(nginx_port,
                                                                     nginx_without_api):
    """nginx picks a list's envelope by the path the API routes, not by its own $uri."""
    def shapes(port: int) -> dict[str, dict]:
        answers = {}
        for target in ENCODED_TARGETS:
            status, _, body = raw_request(port, f"GET {target} HTTP/1.1".encode())
            assert status >= 400, target
            answers[target] = {key: value for key, value in json.loads(body).items()
                               if key != "info"}
        return answers

    assert shapes(nginx_without_api) == shapes(nginx_port)


def test_a_forwarded_for_a_client_writes_itself_counts_for_nothing(nginx_port, upstream):
    raw_request(nginx_port, b"GET /api/health HTTP/1.1", forwarded_headers("spoofed-for"))
    assert logged_client(upstream.log_dir, "spoofed-for") == "127.0.0.1"


def test_behind_a_load_balancer_the_client_is_the_one_it_forwards(sqlite_database_url,
                                                                  tmp_path):
    """PRODUCTION_PROXY_HOPS=2: the balancer's X-Forwarded-For, then nginx's own entry."""
    with gunicorn(sqlite_database_url, tmp_path / "gunicorn", hops=2) as server:
        for port in start_nginx(server.port, tmp_path):
            raw_request(port, b"GET /api/health HTTP/1.1", forwarded_headers("via-balancer"))
    assert logged_client(server.log_dir, "via-balancer") == "198.51.100.7"


VENDORED_CHART = "/static/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs"


@pytest.mark.parametrize("path", [
    "/api/swagger.json",  # application/json, as every API answer
    VENDORED_CHART,  # text/javascript, as Flask names every script
    "/api/financial_data/export",  # text/csv, the largest answers
])
def test_large_answers_are_gzipped_and_say_they_vary_by_accept_encoding(
        nginx_port, sqlite_app, path):
    """A shared cache keeps the gzipped and the plain answer apart only by Vary."""
    with sqlite_app.app_context():
        insert_synthetic_rows(db.session, 300)
    status, plain_headers, plain = raw_request(nginx_port, f"GET {path} HTTP/1.1".encode())
    status, headers, body = raw_request(nginx_port, f"GET {path} HTTP/1.1".encode(),
                                        b"Accept-Encoding: gzip\r\n")
    assert status == 200
    assert headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(body) == plain
    for answer in (headers, plain_headers):
        assert "Accept-Encoding" in answer.get("Vary", ""), path


def test_answers_through_a_proxy_in_front_are_gzipped_too(nginx_port):
    """A load balancer or CDN in front of nginx adds Via; nginx by default gzips none of those."""
    status, headers, body = raw_request(nginx_port, b"GET /api/swagger.json HTTP/1.1",
                                        b"Accept-Encoding: gzip\r\nVia: 1.1 balancer\r\n")
    assert status == 200
    assert headers.get("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(body))["info"]["title"] == "Financial data API"


@pytest.mark.parametrize("path", [
    "/api/swagger.json",  # tagged by app/conditional.py
    VENDORED_CHART,  # a static file, tagged and answered by Flask itself
    "/api/financial_data/export",  # streamed, tagged by the query
])
def test_a_304_through_nginx_carries_the_gzipped_answers_tag_and_vary(
        nginx_port, sqlite_app, path):
    """RFC 9110 15.4.5: a 304 sends the ETag and Vary the 200 would have sent.

    nginx weakens the tag of an answer it gzips, and adds Vary only to those;
    the 304 comes from the app, past gzip, with the app's headers alone.
    """
    with sqlite_app.app_context():
        insert_synthetic_rows(db.session, 300)
    gzip_accepted = b"Accept-Encoding: gzip\r\n"
    status, headers, _ = raw_request(nginx_port, f"GET {path} HTTP/1.1".encode(), gzip_accepted)
    assert (status, headers.get("Content-Encoding")) == (200, "gzip")
    tag = headers["ETag"]
    for accepted in (gzip_accepted, b""):
        status, again, body = raw_request(nginx_port, f"GET {path} HTTP/1.1".encode(),
                                          accepted + f"If-None-Match: {tag}\r\n".encode())
        assert (status, body) == (304, b"")
        assert again["ETag"] == tag
        assert again.get("Vary") == headers["Vary"]
        assert again.get("Cache-Control") == headers.get("Cache-Control")


# CORS_ORIGINS as the API and nginx both get it (docker-compose.prod.yml).
CORS_SETTINGS = {"no origin": "", "every origin": "*",
                 "two origins": " https://app.example , https://Other.example,"}


class CorsProxies(NamedTuple):
    """The API (gunicorn), nginx in front of it, and nginx in front of no API, with the same
    CORS_ORIGINS."""

    origins: str
    api: int
    api_up: int
    api_down: int


@pytest.fixture(scope="module", params=list(CORS_SETTINGS.values()), ids=list(CORS_SETTINGS))
def cors_proxies(request, sqlite_database_url, tmp_path_factory) -> Iterator[CorsProxies]:
    origins = request.param
    with gunicorn(sqlite_database_url, tmp_path_factory.mktemp("gunicorn"), hops=1,
                  CORS_ORIGINS=origins) as server:
        for api_up in start_nginx(server.port, tmp_path_factory.mktemp("nginx"), origins):
            for api_down in start_nginx(free_port(), tmp_path_factory.mktemp("nginx"), origins):
                yield CorsProxies(origins, server.port, api_up, api_down)


def cors_of(message: http.client.HTTPMessage) -> dict:
    """Return what a browser reads of an answer's CORS headers."""
    vary = {token.strip().lower() for value in message.get_all("Vary", [])
            for token in value.split(",")}
    return {"origins": message.get_all("Access-Control-Allow-Origin"),
            "exposed": message.get("Access-Control-Expose-Headers"),
            "varies by origin": "origin" in vary}


@pytest.mark.parametrize("origin", ["https://app.example", "HTTPS://OTHER.EXAMPLE",
                                    "https://other.example.net", "null",
                                    "https://app.example, https://Other.example"])
@pytest.mark.parametrize("target", ["/api/nope", "/api/health", "/api/%73ymbols",
                                    "/apix", "//api/health", "/", "/static/nope"])
def test_the_api_down_answers_with_the_cors_headers_the_api_sends(cors_proxies, target, origin):
    """A script on an allowed origin reads nginx's 503 (and its Retry-After) as the API's own."""
    request_line = f"GET {target} HTTP/1.1".encode()
    origin_header = f"Origin: {origin}\r\n".encode()
    _, api, _ = raw_answer(cors_proxies.api_up, request_line, origin_header)
    status, nginx, _ = raw_answer(cors_proxies.api_down, request_line, origin_header)
    assert status == 503
    assert cors_of(nginx) == cors_of(api)


@pytest.mark.parametrize("target", ["/api/nope", "/"])
def test_the_api_down_answers_a_request_without_origin_as_the_api_with_every_origin(
        cors_proxies, target):
    """Without an Origin the API sends "*" if every origin is allowed; with a list, Flask-CORS
    names one of them, which no browser reads (it sends Origin): nginx leaves it out."""
    request_line = f"GET {target} HTTP/1.1".encode()
    _, api, _ = raw_answer(cors_proxies.api_up, request_line)
    status, nginx, _ = raw_answer(cors_proxies.api_down, request_line)
    assert status == 503
    if cors_proxies.origins == CORS_SETTINGS["two origins"] and target == "/api/nope":
        assert cors_of(api)["origins"] == ["https://Other.example"]
        assert cors_of(nginx) == {**cors_of(api), "origins": None, "exposed": None}
    else:
        assert cors_of(nginx) == cors_of(api)


PREFLIGHT_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                     "Access-Control-Allow-Headers", "Access-Control-Max-Age",
                     "Access-Control-Expose-Headers", "Access-Control-Allow-Private-Network",
                     "Allow")


def preflight(port: int, origin: str, method: str,
              requested: str = "x-request-id,If-None-Match") -> tuple[
                  int, http.client.HTTPMessage, bytes]:
    return raw_answer(port, b"OPTIONS /api/symbols HTTP/1.1",
                      f"Origin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n"
                      f"Access-Control-Request-Headers: {requested}\r\n"
                      "Access-Control-Request-Private-Network: true\r\n".encode())


@pytest.mark.parametrize("method", ["GET", "head", "PUT"])
def test_the_api_down_answers_an_allowed_preflight_as_the_api_does(cors_proxies, method):
    """A preflight that fails is a bare network error to the script; passed, the request
    it clears gets the 503 the script can read."""
    origin = "https://app.example"
    status, api, _ = preflight(cors_proxies.api_up, origin, method)
    assert status == 204
    status, nginx, body = preflight(cors_proxies.api_down, origin, method)
    if cors_proxies.origins == CORS_SETTINGS["no origin"]:
        assert status == 503
        assert "Access-Control-Allow-Origin" not in nginx
        return
    assert (status, body) == (204, b"")
    assert "Content-Type" not in nginx and "Retry-After" not in nginx
    for header in PREFLIGHT_HEADERS:
        assert nginx.get_all(header) == api.get_all(header), header
    assert cors_of(nginx) == cors_of(api)


@pytest.mark.parametrize("requested", ["x-request-id,If-None-Match", "if-none-match,x-request-id",
                                       "X-Request-ID , if-none-match,, x-a"])
def test_the_api_down_allows_the_headers_a_preflight_asks_for_as_the_api_does(
        cors_proxies, requested):
    """The same preflight sent to the API itself and to nginx without it: the same CORS
    headers, as written (Flask-CORS sorted the names asked for, where nginx repeats them)."""
    origin = "https://app.example"
    status, api, _ = preflight(cors_proxies.api, origin, "GET", requested)
    if cors_proxies.origins == CORS_SETTINGS["no origin"]:
        assert "Access-Control-Allow-Headers" not in api
        return
    assert (status, api["Access-Control-Allow-Headers"]) == (204, requested)
    status, nginx, _ = preflight(cors_proxies.api_down, origin, "GET", requested)
    assert status == 204
    for header in PREFLIGHT_HEADERS:
        assert nginx.get_all(header) == api.get_all(header), header


def test_the_api_down_answers_a_preflight_from_an_origin_not_allowed_503(cors_proxies):
    """Only "*" allows it; else the browser fails the preflight, as it would the API's 204."""
    origin = "https://other.example.net"
    status, nginx, _ = preflight(cors_proxies.api_down, origin, "GET")
    if cors_proxies.origins == CORS_SETTINGS["every origin"]:
        assert (status, nginx["Access-Control-Allow-Origin"]) == (204, origin)
    else:
        assert status == 503
        assert "Access-Control-Allow-Origin" not in nginx


@pytest.mark.parametrize("request_line, headers, status", [
    (b"GET /api/financial_data?symbol=" + b"A" * 5000 + b" HTTP/1.1", b"", 414),
    (b"GET /api/financial_data?symbol=\xc3\x89 HTTP/1.1", b"", 400),
    (b"POST /api/health HTTP/1.1", b"Content-Length: 2000000\r\n", 413),
    (b"TRACE /api/health HTTP/1.1", b"", 405),
    (b"POST /api/health HTTP/1.1", b"Transfer-Encoding: gzip, chunked\r\n", 501),
], ids=["URL over 4 KB", "raw UTF-8", "body too large", "TRACE", "transfer encoding"])
def test_what_nginx_refuses_itself_carries_the_cors_headers(cors_proxies, request_line, headers,
                                                            status):
    origin = "https://other.example"
    answer = raw_answer(cors_proxies.api_up, request_line,
                        headers + f"Origin: {origin}\r\n".encode())
    assert answer[0] == status
    allowed = cors_proxies.origins != CORS_SETTINGS["no origin"]
    assert answer[1].get_all("Access-Control-Allow-Origin") == ([origin] if allowed else None)
    assert ("Retry-After" in answer[1].get("Access-Control-Expose-Headers", "")) == allowed


def test_a_preflight_nginx_refuses_is_a_400_without_allow(cors_proxies):
    """Allow is for a 405 and the 204s (a preflight's while the API is down, OPTIONS *'s),
    never for a 400, preflight or not."""
    status, headers, body = raw_request(
        cors_proxies.api_up, b"OPTIONS /api/symbols?symbol=\xc3\x89 HTTP/1.1",
        b"Origin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n")
    assert status == 400
    assert assert_envelope(headers, body) == "malformed request, or headers over 8 KB"
    assert "Allow" not in headers


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_options_asterisk_is_answered_as_options_on_an_endpoint(nginx_port, upstream, version):
    """RFC 9110 9.3.7: OPTIONS * asks what the server allows. nginx's parser refuses its
    target, gunicorn routed it as a path (a 404): both answer as the API to OPTIONS."""
    for port in (upstream.port, nginx_port):
        status, headers, body = raw_request(port, b"OPTIONS * " + version)
        assert (status, body) == (204, b""), port
        assert headers["Allow"] == "GET, HEAD, OPTIONS"
        assert "Content-Type" not in headers
        for header in SECURITY_HEADERS:
            assert header in headers, header


@pytest.mark.parametrize("request_line", [b"GET * HTTP/1.1", b"OPTIONS *x HTTP/1.1",
                                          b"OPTIONS ** HTTP/1.1"])
def test_an_asterisk_other_than_options_asterisk_is_refused(nginx_port, request_line):
    status, headers, body = raw_request(nginx_port, request_line)
    assert status == 400
    assert assert_envelope(headers, body) == "malformed request, or headers over 8 KB"
    assert "Allow" not in headers
