"""Flask CLI commands of the project (``flask --app app <command>``)."""
import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from app.api.caching import clear_cached_answers, is_cache_shared
from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.fetch_run import RUN_LOCK
from financial.runs import delete_runs_before
from financial.stats import refresh_monthly_sums
from lib.db import batch_engine
from lib.db_errors import DATABASE_ERRORS, describe_database_error
from lib.locks import LockFileError, LockTimeout, database_lock

SWAGGER_FILE = PROJECT_ROOT / "conf" / "api.swagger.json"


def openapi_document() -> str:
    """Return the served OpenAPI document as stable, pretty-printed JSON."""
    response = current_app.test_client().get("/api/swagger.json")
    return json.dumps(response.get_json(), indent=2, sort_keys=True) + "\n"


def register_commands(app: Flask) -> None:
    @app.cli.command("openapi")
    @click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
                  default=SWAGGER_FILE, show_default=True)
    def export_openapi(output: Path) -> None:
        """Write the OpenAPI document served at /api/swagger.json to OUTPUT."""
        output.write_text(openapi_document(), encoding="utf-8")
        click.echo(f"wrote {output}")

    @app.cli.command("refresh-sums")
    def refresh_sums() -> None:
        """Recompute monthly_price_sums from financial_data, after rows were changed by hand.

        Waits for a fetch run in progress (up to FETCH_LOCK_TIMEOUT seconds) and
        holds the run lock while it works: on MySQL the two writing the same
        sums at once deadlock, and one of them fails. It reads every stored day:
        each answer may take DATABASE_JOB_TIMEOUT, as in the fetch job.
        """
        config = current_app.config
        timeout = config["FETCH_LOCK_TIMEOUT"]
        try:
            with (
                _database_failure_in_one_line(),
                batch_engine(db.engine, timeout=config["DATABASE_TIMEOUT"],
                             read_timeout=config["DATABASE_JOB_TIMEOUT"]) as engine,
                database_lock(engine, RUN_LOCK, timeout, on_wait=lambda: click.echo(
                    f"waiting up to {timeout:g}s for the fetch run in progress", err=True)),
                Session(engine) as session,
            ):
                refresh_monthly_sums(session)
                session.commit()
        except LockTimeout:
            raise click.ClickException(
                f"a fetch run still held the run lock after {timeout:g}s (FETCH_LOCK_TIMEOUT); "
                "nothing was changed: run it again once the run has finished") from None
        except LockFileError as exc:
            raise click.ClickException(f"{exc}; nothing was changed") from None
        click.echo("monthly sums recomputed" + _clear_cached_answers_and_say())

    @app.cli.command("prune-runs")
    @click.option("--before", "before", required=True, type=click.DateTime(["%Y-%m-%d"]),
                  help="delete the runs that started before this day (YYYY-MM-DD, UTC)")
    def prune_runs(before: datetime.datetime) -> None:
        """Delete old fetch runs and their symbols' outcomes from the run history.

        The newest run, the newest that changed rows and any run in progress
        are kept, whatever their age.
        """
        with _database_failure_in_one_line():
            session = db.session()
            runs, outcomes = delete_runs_before(session, before)
            session.commit()
        click.echo(f"deleted {runs} runs started before {before:%Y-%m-%d} "
                   f"and {outcomes} symbol outcomes" + _clear_cached_answers_and_say())


@contextmanager
def _database_failure_in_one_line() -> Iterator[None]:
    """Stop a command on a database failure with one line naming it, as the fetch job does.

    Nothing is committed then. The line says what failed and hints at the
    cause (e.g. the migrations not run), never the URL; a traceback would
    bury that under library frames.
    """
    try:
        yield
    except (*DATABASE_ERRORS, ProgrammingError) as exc:
        raise click.ClickException(f"database error: {describe_database_error(exc)}; "
                                   "nothing was changed") from None


def _clear_cached_answers_and_say() -> str:
    """Clear the API's cached answers; return "; cached answers cleared", or "" and say why not.

    The data is committed either way, so the command still succeeds, as the
    fetch job does; stderr says how old the API's answers may then be.
    """
    timeout = current_app.config["CACHE_DEFAULT_TIMEOUT"]
    if not is_cache_shared():
        click.echo(f"the API's cache is per process (CACHE_TYPE SimpleCache), out of this "
                   f"command's reach: the API may serve answers up to {timeout}s old", err=True)
        return ""
    if not clear_cached_answers():
        click.echo(f"could not clear the cached answers (see the log); the API may serve "
                   f"answers up to {timeout}s old", err=True)
        return ""
    return "; cached answers cleared"
