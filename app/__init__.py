"""The application shell: ``create_app`` builds a configured Flask app."""
import click
from flask import Flask, Response

from app.api import register_api
from app.api.caching import init_cached_answers
from app.cli import register_commands
from app.conditional import register_conditional_get
from app.dashboard import register_dashboard
from app.errors import register_error_handlers
from app.extensions import cors, db, migrate
from app.metrics import register_metrics
from app.rate_limits import register_rate_limits
from app.request_log import register_request_logging
from app.security import register_security_headers, trust_proxy_hops
from conf.settings import PROJECT_ROOT, BaseConfig, ConfigError, get_config
from lib.db import DatabaseUrlError, check_database_url, configure_engine, engine_options
from lib.log_setup import configure_logging, drop_terminal_styles

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
# Headers a browser script on another (allowed) origin may read.
EXPOSED_HEADERS = ["ETag", "Retry-After", "X-Request-ID", "X-RateLimit-Limit",
                   "X-RateLimit-Remaining", "X-RateLimit-Reset"]


# The API only reads: a browser's preflight is told so.
CORS_METHODS = ["GET", "HEAD", "OPTIONS"]


class StartupError(ConfigError, click.ClickException):
    """A setting the app cannot run with; the Flask CLI prints it as one line, no traceback."""


class FinancialApp(Flask):
    """Flask, answering OPTIONS with 204 No Content and the Allow header.

    Flask's own answer is a 200 with an empty text/html body; a 204 says
    plainly that there is no body, and CORS preflights get their headers too.
    """

    def make_default_options_response(self) -> Response:
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        response.headers["Allow"] = ", ".join(sorted(response.allow))
        return response


def create_app(config: str | BaseConfig | None = None, overrides: dict | None = None) -> Flask:
    """Build the app for ``config`` (an APP_ENV name or a config object).

    ``overrides`` replaces individual settings; tests steer the app with it.
    Raises StartupError naming the setting when one cannot work at all (e.g.
    a malformed DATABASE_URL); a database that is merely down is no error here.
    """
    try:
        settings = config if isinstance(config, BaseConfig) else get_config(config)
        app = FinancialApp(__name__)
        app.config.from_object(settings)
        app.config.update(overrides or {})

        configure_logging("api", app.config["LOG_DIR"], app.config["LOG_LEVEL"])
        drop_terminal_styles("werkzeug")  # `flask run` colours its lines
        trust_proxy_hops(app)
        register_extensions(app)
        api = register_api(app)
        register_dashboard(app)
        # Logging first: its timer starts before any hook that may refuse a request.
        register_request_logging(app)
        register_error_handlers(app, api)
        register_rate_limits(app)
        register_metrics(app)
        register_conditional_get(app)
        register_security_headers(app)
        register_commands(app)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    return app


def register_extensions(app: Flask) -> None:
    """Bind the database, migrations, cache and CORS to ``app``.

    Raises ConfigError when DATABASE_URL cannot work at all.
    """
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    try:
        check_database_url(url)
    except DatabaseUrlError as exc:
        raise ConfigError(f"DATABASE_URL {exc}") from None
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(
        url, timeout=app.config["DATABASE_TIMEOUT"],
        read_timeout=app.config["DATABASE_READ_TIMEOUT"]))
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))

    init_cached_answers(app)
    cors.init_app(app, resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}},
                  methods=CORS_METHODS, expose_headers=EXPOSED_HEADERS)
