"""GET /: the dashboard, a page that reads the public API from the browser.

The page is a template plus static ES modules and CSS under ``app/static``:
no build step, no CDN, and nothing inline, so a strict Content-Security-Policy
(``script-src 'self'; style-src 'self'``) holds.
"""
from flask import Blueprint, Flask, render_template

from app.routes import API_PREFIX, DASHBOARD_PATH
from lib.tickers import SYMBOL_PATTERN, SYMBOL_RULE


def register_dashboard(app: Flask) -> None:
    """Serve the dashboard page at DASHBOARD_PATH."""
    blueprint = Blueprint("dashboard", __name__)

    @blueprint.get(DASHBOARD_PATH)
    def dashboard():
        page = render_template("dashboard.html", api_prefix=API_PREFIX,
                               symbol_pattern=SYMBOL_PATTERN, symbol_rule=SYMBOL_RULE)
        # Revalidate every time, so a new release's page is never served from a stale cache.
        return page, 200, {"Cache-Control": "no-cache"}

    app.register_blueprint(blueprint)
