"""The application shell: ``create_app`` builds a configured Flask app."""
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from inspect import iscoroutinefunction
from pathlib import Path
from typing import Any

import click
from flask import Flask, Response, has_request_context, request
from flask.ctx import RequestContext
from gunicorn.errors import AppImportError
from werkzeug.exceptions import NotFound

from app.api.caching import bind_cache, init_cached_answers
from app.extensions import db
from conf.settings import PROJECT_ROOT, BaseConfig, ConfigError, Problems, read_config
from lib.db import (DatabaseUrlError, check_database_url, check_sqlite_folder, configure_engine,
                    create_sqlite_folder, end_timed_out_statements, engine_options,
                    limit_statement_time, wait_for_slow_readers)
from lib.folders import folder_problem
from lib.log_setup import configure_logging

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
# The newest revision in MIGRATIONS_DIR (a test keeps them equal), so that the
# fetch job can tell an up-to-date schema without loading Alembic.
SCHEMA_REVISION = "0006"


class MigrationHistoryError(Exception):
    """Alembic refuses the revisions the database records (table alembic_version).

    A row no migration script here knows, beside one it does: no upgrade can
    be planned. Or a migration refuses (MigrationRefused) to drop what the
    tables hold. The message says what to do.
    """

    def __init__(self, refusal: str, hint: bool = True) -> None:
        if hint:
            refusal += ("; hint: the database's migration history (table alembic_version) "
                        "does not fit this release's migrations: start the release that last "
                        "migrated it, or repair that table")
        super().__init__(refusal)


class StartupError(ConfigError, click.ClickException, AppImportError):
    """A setting the app cannot run with, printed as one line with no traceback.

    The Flask CLI prints a ClickException so, and a gunicorn worker an
    AppImportError, whose master then stops ("App failed to load") rather
    than start workers again: ``gunicorn 'app:create_app()'`` without the
    project's config, which checks the settings before any worker starts.
    """


class ExactPathRequestContext(RequestContext):
    """Route a path with slashes doubled at its start (``//api/health``) nowhere, named as sent.

    Werkzeug's routing merges them whatever ``merge_slashes`` says, and its
    request's ``path`` keeps one: the 404's message and the log line would
    name a path the client did not send. A file's path with a trailing or
    doubled slash (``/static/dashboard/main.js/``) or a dot segment
    (``/static/./dashboard/main.js``) goes nowhere either: the file's view
    would serve the file, where every route is a 404.
    """

    def match_request(self) -> None:
        path_info = self.request.environ.get("PATH_INFO") or ""
        if path_info.startswith("//"):
            doubled = len(path_info) - len(path_info.lstrip("/")) - 1
            self.request.path = "/" * doubled + self.request.path
            self.request.routing_exception = NotFound()
        else:
            super().match_request()
            filename = (self.request.view_args or {}).get("filename")
            if filename and {"", ".", ".."} & set(filename.split("/")):
                self.request.routing_exception = NotFound()


class FinancialApp(Flask):
    """Flask, answering OPTIONS with 204 and Allow, doubled slashes with 404, and a little faster.

    Flask's own answer to OPTIONS is a 200 with an empty text/html body; a
    204 says plainly that there is no body, and CORS preflights get their
    headers too. Flask answers it without asking the view, so a file that
    is not there (``/static/<path>``) got the 204 too: a file's view (an
    endpoint named ``static``) is asked first, and a missing file is the 404
    of every unknown path. No other view runs for OPTIONS.

    Slashes doubled between a route's segments (``/api//statistics``) make an
    unknown path, a JSON 404, instead of Werkzeug's redirect to the merged
    path, whose body is HTML (and which escaped RESTX's error handling on a POST).
    So do slashes doubled at the start (``//api/health``), which Werkzeug's
    routing merges whatever ``merge_slashes`` says.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url_map.merge_slashes = False
        self._coroutine_functions: dict[Callable, bool] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        """Return ``func`` as Flask would, asking inspect once per function.

        Flask asks whether each hook and view is a coroutine on every call,
        about ten times a request here; the answer never changes. It is kept
        per plain function: every RESTX resource is a new instance per
        request, whose bound ``dispatch_request`` as a key would keep each
        request's resource for as long as the worker lives.
        """
        function = getattr(func, "__func__", func)
        is_coroutine = self._coroutine_functions.get(function)
        if is_coroutine is None:
            is_coroutine = self._coroutine_functions[function] = iscoroutinefunction(function)
        return super().ensure_sync(func) if is_coroutine else func

    def request_context(self, environ: dict) -> RequestContext:
        return ExactPathRequestContext(self, environ)

    def make_default_options_response(self) -> Response:
        endpoint = request.endpoint or ""
        if endpoint.rpartition(".")[2] == "static" and request.view_args:  # a file's view
            self.ensure_sync(self.view_functions[endpoint])(**request.view_args).close()
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        response.headers["Allow"] = ", ".join(sorted(response.allow))
        return response


def create_app(config: str | BaseConfig | None = None, overrides: dict | None = None, *,
               serving: bool = True, writes: bool = True) -> Flask:
    """Build the app for ``config`` (an APP_ENV name or a config object).

    ``overrides`` replaces individual settings; tests steer the app with it.
    ``serving=False`` builds only the shell the fetch job needs: settings,
    logging, the database and the cache, without the API, the dashboard,
    their hooks, CORS, the CLI commands and migrations (``register_migrations``
    adds those), and without importing them: the job's start-up time is part
    of every run. ``writes=False`` (the fetch job's dry run, which opens no
    database) does not create the SQLite file's folder.
    Raises StartupError naming every setting that cannot work at all (e.g.
    a malformed DATABASE_URL), those of ``config`` first, having created
    nothing (no LOG_DIR, no SQLite folder); a database that is merely down
    is no error here.
    """
    try:
        settings = config if isinstance(config, BaseConfig) else read_config(config)
        app = FinancialApp(__name__)
        app.config.from_object(settings)
        app.config.update(overrides or {})

        _check_settings(app, settings.problems.found, serving=serving, writes=writes)
        _configure_logging(app)
        register_extensions(app, export_bind=serving, create_folder=writes)
        if serving:
            register_migrations(app)
            # Imported here, not above: the fetch job's app leaves them out.
            from app.serving import register_serving
            register_serving(app)
    except ConfigError as exc:
        raise StartupError(*exc.problems) from None
    return app


def _check_settings(app: Flask, found: list[str], *, serving: bool, writes: bool) -> None:
    """Raise ConfigError naming the problems ``found`` so far and those building ``app`` meets.

    Each check runs whatever the others found, so one start-up names them
    all. None creates a file or folder: a start refused leaves none behind.
    The cache is bound here: that is its check. ``writes``: the SQLite
    file's folder is to be created.
    """
    problems = Problems()
    problems.found.extend(found)
    problems.call(partial(_check_log_dir, app.config["LOG_DIR"]), None)
    problems.call(partial(_check_database_url, app.config["SQLALCHEMY_DATABASE_URI"],
                          writes=writes), None)
    problems.call(partial(bind_cache, app), None)
    if serving:  # settings only the API reads; the fetch job does not import their modules
        from app.rate_limits import check_rate_limit
        from app.security import check_proxy_hops
        problems.call(partial(check_proxy_hops, app.config), None)
        problems.call(partial(check_rate_limit, app.config), None)
    if problems.found:
        raise ConfigError(*problems.found)


def _check_log_dir(log_dir: str) -> None:
    """Raise ConfigError when LOG_DIR cannot be created or written; create nothing."""
    problem = folder_problem(Path(log_dir), writable=True)
    if problem:
        raise ConfigError(_log_dir_refusal(log_dir, problem))


def _configure_logging(app: Flask) -> None:
    """Log to LOG_DIR; raise ConfigError when it still cannot hold the log files.

    A log file that cannot be written later (a full or read-only disk) does
    not stop the app: lib.log_setup says so once and keeps logging to stderr.
    """
    try:
        configure_logging("api", app.config["LOG_DIR"], app.config["LOG_LEVEL"])
    except OSError as exc:
        raise ConfigError(_log_dir_refusal(
            app.config["LOG_DIR"], exc.strerror or exc.__class__.__name__)) from None


def _log_dir_refusal(log_dir: str, reason: str) -> str:
    return f"LOG_DIR {log_dir} cannot hold the log files ({reason})"


def register_extensions(app: Flask, *, export_bind: bool = True,
                        create_folder: bool = True) -> None:
    """Bind the database to ``app`` and set up its cached answers.

    ``export_bind`` adds the CSV export's engine. ``_check_settings`` has
    checked the URL and bound the cache. ``create_folder`` creates the SQLite
    file's folder, raising ConfigError when it cannot.
    """
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if create_folder:
        with _naming_database_url():
            create_sqlite_folder(url)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(
        url, timeout=app.config["DATABASE_TIMEOUT"],
        read_timeout=app.config["DATABASE_READ_TIMEOUT"]))
    if export_bind:
        _add_export_bind(app, url)
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            # The API only reads: a request reads all its answer from one snapshot.
            configure_engine(engine, reads_one_snapshot=has_request_context)
        # A statement runs on the server no longer than its answer is waited for.
        limit_statement_time(db.engine, app.config["DATABASE_READ_TIMEOUT"])
        for bind, engine in db.engines.items():
            if bind is not None:  # the export's, whose statements have no time limit
                end_timed_out_statements(engine, killer=db.engine)
                wait_for_slow_readers(engine, app.config["EXPORT_CLIENT_PAUSE"])
    init_cached_answers(app)


def _check_database_url(url: str, *, writes: bool) -> None:
    """Raise ConfigError when DATABASE_URL cannot work at all (lib.db.check_database_url).

    ``writes``: also when its SQLite file's folder cannot be created.
    """
    with _naming_database_url():
        check_database_url(url)
        if writes:
            check_sqlite_folder(url)


@contextmanager
def _naming_database_url() -> Iterator[None]:
    """Raise lib.db's DatabaseUrlError as the ConfigError naming DATABASE_URL."""
    try:
        yield
    except DatabaseUrlError as exc:
        raise ConfigError(f"DATABASE_URL {exc}") from None


def _add_export_bind(app: Flask, url: str) -> None:
    """Give the CSV export an engine of its own where each answer has a read timeout (MySQL).

    Its read timeout is EXPORT_READ_TIMEOUT (at least the API's own), for
    the sort before the first row. Its statements have no time limit on the
    server (``limit_statement_time``): the rows stream for as long as the
    client reads them. One it stops waiting for is ended on the server all
    the same (``end_timed_out_statements``). It keeps one idle connection, but a
    thread that streams an export holds one of it besides the one the
    request pool keeps open for it: lib.connection_budget counts both.
    """
    from app.api.export import EXPORT_BIND  # the API's module: serving apps only
    read_timeout = max(app.config["EXPORT_READ_TIMEOUT"], app.config["DATABASE_READ_TIMEOUT"])
    options = engine_options(url, timeout=app.config["DATABASE_TIMEOUT"], read_timeout=read_timeout)
    if "read_timeout" in options.get("connect_args", {}):
        app.config.setdefault("SQLALCHEMY_BINDS",
                              {EXPORT_BIND: {"url": url, **options, "pool_size": 1}})


def register_migrations(app: Flask) -> None:
    """Bind Flask-Migrate (``flask db``, ``flask_migrate.upgrade()``) to ``app``.

    Alembic is imported only here: the fetch job needs it only when the
    schema is behind.
    """
    from flask_migrate import Migrate
    Migrate(app, db, directory=str(MIGRATIONS_DIR))


def upgrade_to_head() -> None:
    """Apply the pending migrations of the current app (``register_migrations`` first).

    Alembic itself, not Flask-Migrate's ``upgrade()``, which logs Alembic's
    refusal as a bare "Error: ..." and exits: it is raised as
    MigrationHistoryError, for the caller to say in its own line.
    """
    from alembic import command
    from alembic.util import CommandError
    from flask import current_app

    from lib.migration_refused import MigrationRefused
    try:
        command.upgrade(current_app.extensions["migrate"].migrate.get_config(), "head")
    except MigrationRefused as exc:
        raise MigrationHistoryError(str(exc), hint=False) from exc
    except CommandError as exc:
        raise MigrationHistoryError(str(exc)) from exc
