"""GET / serves the dashboard: local files only, nothing inline, the API's errors untouched.

What the page does in a browser is tested in tests/browser/.
"""
import re
from posixpath import dirname, normpath

from app.routes import API_PREFIX
from conf.settings import PROJECT_ROOT
from lib.tickers import SYMBOL_PATTERN, SYMBOL_RULE
from tests.helpers import parse_page

VENDOR_DIR = PROJECT_ROOT / "app" / "static" / "vendor" / "lightweight-charts"
# A static import's module, or a dynamic import's of a fixed name: import('./x.js').
JS_IMPORT = re.compile(r"""^import\b[^'"]*?from\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]""",
                       re.MULTILINE)
JS_TYPES = ("text/javascript", "application/javascript")


def test_the_dashboard_is_html_with_nothing_inline(sqlite_client):
    response = sqlite_client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"
    page = parse_page(response)
    assert page.inline == []
    assert page.loads and all(url.startswith("/static/") for url in page.loads), page.loads


def test_every_file_the_page_loads_is_served_by_the_app(sqlite_client):
    pending = list(parse_page(sqlite_client.get("/")).loads)
    served = set()
    while pending:
        url = pending.pop()
        if url in served:
            continue
        with sqlite_client.get(url) as response:  # closes the static file
            assert response.status_code == 200, url
            served.add(url)
            if url.endswith((".js", ".mjs")):
                assert response.mimetype in JS_TYPES, (url, response.mimetype)
                imports = [static or dynamic for static, dynamic
                           in JS_IMPORT.findall(response.get_data(as_text=True))]
                assert all(name.startswith(".") for name in imports), f"{url} imports {imports}"
                pending += [normpath(f"{dirname(url)}/{name}") for name in imports]
    assert "/static/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs" \
        in served
    assert "/static/dashboard/dashboard.js" in served, "main.js's import of it is followed"


def test_the_page_gets_the_api_prefix_and_the_symbol_rule_from_the_app(sqlite_client):
    attributes = parse_page(sqlite_client.get("/")).main_attributes
    assert attributes["data-api-prefix"] == API_PREFIX
    assert attributes["data-symbol-pattern"] == SYMBOL_PATTERN
    assert attributes["data-symbol-rule"] == SYMBOL_RULE


def test_the_vendored_chart_library_is_the_pinned_version_with_its_licence():
    pinned = re.search(r"^LIGHTWEIGHT_CHARTS_VERSION := (\S+)$",
                       (PROJECT_ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    library = (VENDOR_DIR / "lightweight-charts.standalone.production.mjs").read_text()
    assert f"TradingView Lightweight Charts™ v{pinned}\n" in library[:300]
    licence = (VENDOR_DIR / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence


def test_the_page_credits_tradingview_with_a_link(sqlite_client):
    page = sqlite_client.get("/").get_data(as_text=True)
    assert '<a href="https://www.tradingview.com/">TradingView</a> Lightweight Charts™' in page


def test_the_api_keeps_answering_json_beside_the_page(sqlite_client):
    response = sqlite_client.post("/")
    assert response.status_code == 405
    assert response.get_json() == {"data": {}, "info": {
        "error": "method POST is not allowed on /; allowed: GET, HEAD, OPTIONS"}}
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    missing = sqlite_client.get("/static/dashboard/missing.js")
    assert missing.status_code == 404 and missing.is_json


def test_the_readme_shows_the_dashboard_screenshot():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/dashboard.png)" in readme
    assert (PROJECT_ROOT / "docs" / "dashboard.png").is_file()
