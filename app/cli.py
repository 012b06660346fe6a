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

from app.api.caching import clear_cached_answers, clear_run_history_answers, is_cache_shared
from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.fetch_run import RUN_LOCK
from financial.ingest import delete_prices
from financial.monthly_sums import refresh_monthly_sums
from financial.queries import count_prices
from financial.runs import close_runs_left_running, delete_runs_before, utc_now
from lib.db import batch_engine
from lib.db_errors import DATABASE_ERRORS, describe_database_error
from lib.locks import LockFileError, LockTimeout, database_lock
from lib.tickers import SYMBOL_RULE, distinct_tickers

SWAGGER_FILE = PROJECT_ROOT / "conf" / "api.swagger.json"


def openapi_document() -> str:
    """Return the served OpenAPI document as stable, pretty-printed JSON."""
    response = current_app.test_client().get("/api/swagger.json")
    return json.dumps(response.get_json(), indent=2, sort_keys=True) + "\n"


def register_commands(app: Flask) -> None:
    """Add the commands openapi, refresh-sums, prune-runs and forget-symbols to ``flask``."""
    @app.cli.command("openapi")
    @click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
                  default=SWAGGER_FILE, show_default=True)
    def export_openapi(output: Path) -> None:
        """Write the OpenAPI document served at /api/swagger.json to the --output file."""
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
        with _database_failure_in_one_line(), _holding_the_run_lock() as session:
            refresh_monthly_sums(session)
            session.commit()
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

    @app.cli.command("forget-symbols")
    @click.argument("symbols", nargs=-1, required=True, callback=_tickers)
    @click.option("--yes", is_flag=True, help="delete without asking first")
    def forget_symbols(symbols: list[str], yes: bool) -> None:
        """Delete the stored prices of SYMBOLS (e.g. IBM AAPL, or IBM,AAPL).

        For symbols taken out of SYMBOLS: their days in financial_data and
        their monthly sums go, so /api/symbols, the dashboard and the
        newest-day metric (and its staleness alert) no longer list them. Their
        run history (fetch_runs, /api/fetch_runs) is kept. One transaction
        per symbol, under the fetch job's run lock. Exit status 1 when a
        symbol had no stored prices (the others are still deleted), when
        nothing was confirmed, or on a database failure; 2 for a malformed symbol.
        """
        stored = _stored_days(symbols)
        for symbol in symbols:
            if not stored[symbol]:
                click.echo(f"{symbol}: no stored prices, nothing to delete", err=True)
        doomed = [symbol for symbol in symbols if stored[symbol]]
        if doomed:
            _warn_if_still_fetched(doomed)
            if not yes:
                click.confirm("Delete the stored prices of " + ", ".join(
                    f"{symbol} ({stored[symbol]} days)" for symbol in doomed)
                    + "? Their run history is kept.", abort=True)
            _delete_prices(doomed)
        if len(doomed) < len(symbols):
            raise click.exceptions.Exit(1)


def _tickers(_context: click.Context, _param: click.Parameter,
             values: tuple[str, ...]) -> list[str]:
    """Return the distinct tickers of the arguments (comma-separated too), upper-cased, in order.

    The fetch job's rule (lib.tickers); a malformed one is a usage error (exit status 2).
    """
    names, bad = distinct_tickers(name for value in values for name in value.split(","))
    if bad or not names:
        raise click.BadParameter(f"{', '.join(bad) or '(none given)'}: use {SYMBOL_RULE}")
    return names


def _stored_days(symbols: list[str]) -> dict[str, int]:
    """Return how many days of each symbol are stored, from a short read of its own."""
    session = db.session()
    with _database_failure_in_one_line():
        try:
            return {symbol: count_prices(session, symbols=[symbol], start_date=None,
                                         end_date=None) for symbol in symbols}
        finally:
            session.close()


def _warn_if_still_fetched(symbols: list[str]) -> None:
    configured = {name.strip().upper() for name in current_app.config["SYMBOLS"]}
    fetched = [symbol for symbol in symbols if symbol in configured]
    if fetched:
        them = "it" if len(fetched) == 1 else "them"
        click.echo(f"still in SYMBOLS: {', '.join(fetched)}; the next fetch run stores {them} "
                   f"again: take {them} out of SYMBOLS first (and restart a running "
                   "scheduler, which reads SYMBOLS at its start)", err=True)


def _delete_prices(symbols: list[str]) -> None:
    """Delete each symbol's prices in a transaction of its own, saying so; then clear the cache.

    A database failure stops at the symbol it hit, whose rows stay as they
    were; the cached answers are cleared all the same if any symbol went.
    """
    deleted = 0
    try:
        with _database_failure_in_one_line(), _holding_the_run_lock() as session:
            for symbol in symbols:
                with _database_failure_in_one_line(
                        f"{symbol} and the symbols after it were left as they were"):
                    days = delete_prices(session, symbol)
                    session.commit()
                deleted += 1
                click.echo(f"{symbol}: {days} rows deleted")
    finally:
        if deleted and _clear_cached_answers_and_say():
            click.echo("cached answers cleared")


@contextmanager
def _holding_the_run_lock() -> Iterator[Session]:
    """Yield a session on the database while holding the fetch job's run lock.

    Waits for a fetch run in progress up to FETCH_LOCK_TIMEOUT seconds (and a
    run that starts meanwhile waits in turn), so a command never writes the
    prices or sums at the same time as a run. Answers may take
    DATABASE_JOB_TIMEOUT, as in the fetch job: the API's would time out on a
    big table.
    """
    config = current_app.config
    timeout = config["FETCH_LOCK_TIMEOUT"]
    try:
        with (
            batch_engine(db.engine, timeout=config["DATABASE_TIMEOUT"],
                         read_timeout=config["DATABASE_JOB_TIMEOUT"]) as engine,
            database_lock(engine, RUN_LOCK, timeout, on_wait=lambda: click.echo(
                f"waiting up to {timeout:g}s for the fetch run in progress", err=True)),
            Session(engine) as session,
        ):
            _close_runs_left_running(session)
            yield session
    except LockTimeout:
        raise click.ClickException(
            f"a fetch run still held the run lock after {timeout:g}s (FETCH_LOCK_TIMEOUT); "
            "nothing was changed: run it again once the run has finished") from None
    except LockFileError as exc:
        raise click.ClickException(f"{exc}; nothing was changed") from None


def _close_runs_left_running(session: Session) -> None:
    """Mark the runs left ``running`` by dead processes ``interrupted``, as the next run would.

    Holding the run lock, this command knows no run is in progress: a run
    waiting for it meanwhile then names no dead run as the one it waits for.
    The run history's cached answers are cleared at once: the command may
    fail before its own clear, at its end.
    """
    if close_runs_left_running(session, utc_now()):
        clear_run_history_answers()


@contextmanager
def _database_failure_in_one_line(consequence: str = "nothing was changed") -> Iterator[None]:
    """Stop a command on a database failure with one line naming it, as the fetch job does.

    The block's transaction is not committed; the line says what failed,
    hints at the cause (e.g. the migrations not run), never the URL, and
    ends with ``consequence``. A traceback would bury that under library frames.
    """
    try:
        yield
    except (*DATABASE_ERRORS, ProgrammingError) as exc:
        raise click.ClickException(f"database error: {describe_database_error(exc)}; "
                                   f"{consequence}") from None


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
    if not clear_cached_answers(final=True):
        click.echo(f"could not clear the cached answers (see the log); the API may serve "
                   f"answers up to {timeout}s old", err=True)
        return ""
    return "; cached answers cleared"
