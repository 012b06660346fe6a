"""flask forget-symbols: a symbol's stored prices go, its run history stays, the API follows."""
import datetime
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, select, text

from app.extensions import db
from financial.fetch_run import RUN_LOCK
from financial.models import FetchRunSymbol, FinancialData, MonthlyPriceSums
from financial.runs import RunRecorder, SymbolOutcome
from lib.locks import database_lock
from tests.helpers import build_app, dispose_engines, scrape

D = datetime.date
IBM_STATS = "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-03-31"
NEWEST_DAY = "financial_newest_stored_date_seconds"
EXPORT = "/api/financial_data/export"


@pytest.fixture
def two_symbols(app, make_price, store_prices):
    """IBM (two days in two months) and AAPL stored, and a run that fetched both."""
    store_prices([make_price(symbol="IBM", date=D(2023, 1, 3), open_price=Decimal("10.00")),
                  make_price(symbol="IBM", date=D(2023, 3, 24), open_price=Decimal("20.00")),
                  make_price(symbol="AAPL", date=D(2023, 3, 24))])
    with app.app_context():
        run = RunRecorder.open(db.session, "manual")
        run.add(SymbolOutcome("IBM", "ok", 2, 2, 0, D(2023, 3, 24)))
        run.add(SymbolOutcome("AAPL", "ok", 1, 1, 0, D(2023, 3, 24)))
        run.finish("ok", "2 of 2 symbols stored, 3 new rows, 0 updated")
    app.config["SYMBOLS"] = ["AAPL"]  # IBM was taken out of SYMBOLS
    return app


def symbols_of(app, model) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(model.symbol)))


def listed_symbols(client) -> list[str]:
    body = client.get("/api/symbols").get_json()
    return [entry["symbol"] for entry in body["data"]]


def newest_day_series(client) -> list[str]:
    return sorted(dict(labels)["symbol"] for name, labels in scrape(client) if name == NEWEST_DAY)


def per_process_cache_note(app) -> str:
    return (f"the API's cache is per process (CACHE_TYPE SimpleCache), out of this command's "
            f"reach: the API may serve answers up to {app.config['CACHE_DEFAULT_TIMEOUT']}s old\n")


def test_a_forgotten_symbol_leaves_the_api_and_the_metrics_but_not_the_history(two_symbols):
    app = two_symbols
    result = app.test_cli_runner().invoke(args=["forget-symbols", "ibm", "--yes"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "IBM: 2 rows deleted\n", per_process_cache_note(app))
    assert symbols_of(app, FinancialData) == ["AAPL"]
    assert symbols_of(app, MonthlyPriceSums) == ["AAPL"]
    assert symbols_of(app, FetchRunSymbol) == ["AAPL", "IBM"], "the run history is kept"
    client = app.test_client()
    assert listed_symbols(client) == ["AAPL"]
    assert newest_day_series(client) == ["AAPL"]
    assert client.get(IBM_STATS).status_code == 404
    history = client.get("/api/fetch_runs").get_json()["data"][0]["symbols"]
    assert [outcome["symbol"] for outcome in history] == ["AAPL", "IBM"]


@pytest.mark.parametrize("query, left", [("", ["AAPL"]), ("?symbol=IBM", [])])
def test_a_forgotten_symbol_changes_the_export_tag(two_symbols, query, left):
    """A client holding the export gets the new one, not a 304 for rows no longer stored."""
    app = two_symbols
    client = app.test_client()
    tag = client.get(EXPORT + query).headers["ETag"]
    assert client.get(EXPORT + query, headers={"If-None-Match": tag}).status_code == 304
    result = app.test_cli_runner().invoke(args=["forget-symbols", "IBM", "--yes"])
    assert result.exit_code == 0, result.output
    changed = client.get(EXPORT + query, headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != tag
    rows = changed.get_data(as_text=True).splitlines()[1:]
    assert sorted({row.split(",")[0] for row in rows}) == left


def test_another_symbol_forgotten_keeps_a_filtered_export_tag(two_symbols):
    """Only the exported symbols' stored days name the data: AAPL's export is still current."""
    app = two_symbols
    client = app.test_client()
    tag = client.get(EXPORT + "?symbol=AAPL").headers["ETag"]
    result = app.test_cli_runner().invoke(args=["forget-symbols", "IBM", "--yes"])
    assert result.exit_code == 0, result.output
    assert client.get(EXPORT + "?symbol=AAPL",
                      headers={"If-None-Match": tag}).status_code == 304


def test_the_command_asks_first_and_a_no_changes_nothing(two_symbols):
    app = two_symbols
    runner = app.test_cli_runner()
    declined = runner.invoke(args=["forget-symbols", "IBM,AAPL"], input="n\n")
    assert declined.exit_code == 1
    assert declined.stdout == ("Delete the stored prices of IBM (2 days), AAPL (1 days)? Their "
                               "run history is kept. [y/N]: n\n")
    assert declined.stderr == ("still in SYMBOLS: AAPL; the next fetch run stores it again: "
                               "take it out of SYMBOLS first (and restart a running scheduler, "
                               "which reads SYMBOLS at its start)\nAborted!\n")
    assert symbols_of(app, FinancialData) == ["AAPL", "IBM", "IBM"]
    confirmed = runner.invoke(args=["forget-symbols", "IBM"], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert confirmed.stdout.endswith("[y/N]: y\nIBM: 2 rows deleted\n")
    assert symbols_of(app, FinancialData) == ["AAPL"]


def test_a_symbol_with_no_stored_prices_is_named_and_fails_the_command(two_symbols):
    app = two_symbols
    runner = app.test_cli_runner()
    result = runner.invoke(args=["forget-symbols", "MSFT", "IBM", "--yes"])
    assert (result.exit_code, result.stdout) == (1, "IBM: 2 rows deleted\n")
    assert result.stderr.startswith("MSFT: no stored prices, nothing to delete\n")
    assert symbols_of(app, FinancialData) == ["AAPL"], "the other symbol is deleted all the same"
    # Nothing to delete at all: nothing is asked (no input would abort), and the status says so.
    again = runner.invoke(args=["forget-symbols", "IBM"])
    assert (again.exit_code, again.stdout, again.stderr) == (
        1, "", "IBM: no stored prices, nothing to delete\n")


@pytest.mark.parametrize("argument", ["$IBM", "IBM,TOO-LONG-FOR-A-TICKER", ","])
def test_a_malformed_symbol_is_a_usage_error_and_changes_nothing(two_symbols, argument):
    app = two_symbols
    result = app.test_cli_runner().invoke(args=["forget-symbols", argument, "--yes"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert "Invalid value for 'SYMBOLS...'" in result.stderr
    assert "use 1 to 16 letters, digits, '.' or '-', starting with a letter or digit" in (
        result.stderr)
    assert "Traceback" not in result.output
    assert symbols_of(app, FinancialData) == ["AAPL", "IBM", "IBM"]


def test_the_command_waits_for_a_fetch_run_and_gives_up_without_a_change(two_symbols):
    app = two_symbols
    app.config["FETCH_LOCK_TIMEOUT"] = 0
    with app.app_context():
        url = db.engine.url.render_as_string(hide_password=False)
    fetch_run = create_engine(url)
    try:
        with database_lock(fetch_run, RUN_LOCK, 1):
            result = app.test_cli_runner().invoke(args=["forget-symbols", "IBM", "--yes"])
    finally:
        fetch_run.dispose()
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "waiting up to 0s for the fetch run in progress\nError: a fetch run still held the run "
        "lock after 0s (FETCH_LOCK_TIMEOUT); nothing was changed: run it again once the run "
        "has finished\n")
    assert symbols_of(app, FinancialData) == ["AAPL", "IBM", "IBM"]


def test_a_symbol_is_one_transaction_its_prices_and_sums_go_together_or_not_at_all(two_symbols):
    """The sums fail after the prices were deleted (their table is gone): both stay."""
    app = two_symbols
    with app.app_context():
        db.session.execute(text("ALTER TABLE monthly_price_sums RENAME TO forget_hidden_sums"))
        db.session.commit()
    try:
        result = app.test_cli_runner().invoke(args=["forget-symbols", "IBM", "--yes"])
    finally:
        with app.app_context():
            db.session.execute(text("ALTER TABLE forget_hidden_sums RENAME TO monthly_price_sums"))
            db.session.commit()
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith("Error: database error: ")
    assert result.stderr.endswith("; IBM and the symbols after it were left as they were\n")
    assert result.stderr.count("\n") == 1
    assert symbols_of(app, FinancialData) == ["AAPL", "IBM", "IBM"]
    assert symbols_of(app, MonthlyPriceSums) == ["AAPL", "IBM", "IBM"]
    assert app.test_client().get(IBM_STATS).get_json()["data"]["average_daily_open_price"] == 15.0


@pytest.mark.redis
def test_the_api_stops_serving_a_forgotten_symbol_at_once_with_redis(redis_app, two_symbols,
                                                                     tmp_path):
    client = redis_app.test_client()
    assert listed_symbols(client) == ["AAPL", "IBM"]
    assert client.get(IBM_STATS).status_code == 200
    # The command runs in a process of its own: an app of its own on the same Redis.
    config = redis_app.config
    command = build_app(config["SQLALCHEMY_DATABASE_URI"], tmp_path / "cli-log",
                        CACHE_TYPE="RedisCache", CACHE_REDIS_URL=config["CACHE_REDIS_URL"],
                        SYMBOLS=["AAPL"])
    result = command.test_cli_runner().invoke(args=["forget-symbols", "IBM", "--yes"])
    dispose_engines(command)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "IBM: 2 rows deleted\ncached answers cleared\n", "")
    assert listed_symbols(client) == ["AAPL"]
    assert client.get(IBM_STATS).status_code == 404
