"""The application shell: ``create_app`` builds a configured Flask app."""
import logging
import time

from flask import Flask, g, request

from app.api import register_api
from app.api.caching import init_cached_answers
from app.cli import register_commands
from app.errors import register_error_handlers
from app.extensions import cors, db, migrate
from conf.settings import PROJECT_ROOT, BaseConfig, get_config
from lib.db import configure_engine, engine_options, prepare_sqlite_file
from lib.log_setup import configure_logging

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"

request_logger = logging.getLogger("app.requests")


def create_app(config: str | BaseConfig | None = None, overrides: dict | None = None) -> Flask:
    """Build the app for ``config`` (an APP_ENV name or a config object).

    ``overrides`` replaces individual settings; tests steer the app with it.
    """
    settings = config if isinstance(config, BaseConfig) else get_config(config)
    app = Flask(__name__)
    app.config.from_object(settings)
    app.config.update(overrides or {})

    configure_logging("api", app.config["LOG_DIR"], app.config["LOG_LEVEL"])
    register_extensions(app)
    api = register_api(app)
    register_error_handlers(app, api)
    register_request_logging(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    """Bind the database, migrations, cache and CORS to ``app``."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    prepare_sqlite_file(url)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(
        url, timeout=app.config["DATABASE_TIMEOUT"],
        read_timeout=app.config["DATABASE_READ_TIMEOUT"]))
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))

    init_cached_answers(app)
    cors.init_app(app, resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}})


def register_request_logging(app: Flask) -> None:
    """Log one line per request: method, path, status and duration."""

    @app.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        started = g.get("request_started")
        elapsed_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        request_logger.info("%s %s %s %.1fms", request.method, request.full_path.rstrip("?"),
                            response.status_code, elapsed_ms)
        return response
