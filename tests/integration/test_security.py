"""Security headers on every response, and Swagger UI working under the strict CSP."""
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from app.security import CONTENT_SECURITY_POLICY
from tests.helpers import build_app, parse_page

EXPECTED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}
CHROMIUM_SECONDS = 60


def assert_security_headers(response) -> None:
    assert {name: response.headers.get(name) for name in EXPECTED_HEADERS} == EXPECTED_HEADERS


def test_the_policy_allows_only_this_origin_and_no_inline_code():
    directives = dict(directive.split(" ", 1) for directive in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200),
    ("GET", "/static/dashboard/dashboard.js", 200),
    ("GET", "/api/financial_data", 200),
    ("GET", "/api/symbols", 200),
    ("GET", "/api/fetch_runs", 200),
    ("GET", "/api/docs", 200),
    ("GET", "/api/swagger.json", 200),
    ("GET", "/swaggerui/swagger-ui-bundle.js", 200),
    ("GET", "/static/swagger/init.js", 200),
    ("GET", "/metrics", 200),
    ("GET", "/api/financial_data?limit=0", 400),
    ("GET", "/api/nothing", 404),
    ("GET", "/elsewhere", 404),
    ("POST", "/api/statistics", 405),
])
def test_every_response_carries_the_security_headers(sqlite_client, method, path, status):
    with sqlite_client.open(path, method=method) as response:
        assert response.status_code == status
        assert_security_headers(response)


def test_conditional_and_database_error_responses_carry_them_too(sqlite_client, tmp_path):
    tag = sqlite_client.get("/api/docs").headers["ETag"]
    assert_security_headers(sqlite_client.get("/api/docs", headers={"If-None-Match": tag}))
    (tmp_path / "broken.db").mkdir()
    broken = build_app(f"sqlite:///{tmp_path / 'broken.db'}", tmp_path / "log")
    response = broken.test_client().get("/api/financial_data")
    assert response.status_code == 503
    assert_security_headers(response)


def test_the_docs_page_has_no_inline_code(sqlite_client):
    assert parse_page(sqlite_client.get("/api/docs")).inline == []


@pytest.fixture
def live_server(sqlite_app) -> Iterator[str]:
    """Serve ``sqlite_app`` on a free local port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, sqlite_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_swagger_ui_renders_in_a_real_browser_without_csp_violations(live_server, sqlite_client):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed: apt-get install chromium (.ci/run installs it)")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             # Fast-forwards timers; the page's requests still complete first.
             "--virtual-time-budget=60000", "--enable-logging=stderr", "--v=0",
             "--dump-dom", f"{live_server}/api/docs"],
            capture_output=True, text=True, timeout=CHROMIUM_SECONDS)
    violations = [line for line in result.stderr.splitlines()
                  if "Content Security Policy" in line]
    assert violations == []
    # Swagger UI draws one section per namespace from /api/swagger.json.
    namespaces = len(sqlite_client.get("/api/swagger.json").get_json()["tags"])
    assert result.stdout.count('class="opblock-tag-section') == namespaces, result.stdout[-2000:]
