"""A stalled AlphaVantage against the fetch job, run as a process: deadlines per symbol and run."""
import subprocess
import sys

from sqlalchemy import func, select

from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.models import FinancialData
from tests.helpers import history, isolated_environment

KEY = "SECRETKEY123"
AAPL = "AAPL_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"


def run_job(app, fake_alphavantage, tmp_path, **settings: str) -> subprocess.CompletedProcess:
    env = isolated_environment(
        APP_ENV="testing", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        LOG_DIR=str(tmp_path / "log"), ALPHAVANTAGE_API_KEY=KEY,
        ALPHAVANTAGE_BASE_URL=fake_alphavantage.url, ALPHAVANTAGE_REQUEST_INTERVAL="0",
        ALPHAVANTAGE_BACKOFF_FACTOR="0", SYMBOLS="IBM,AAPL,MSFT", **settings)
    result = subprocess.run([sys.executable, "get_raw_data.py"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    log = (tmp_path / "log" / "get_raw_data.log").read_text()
    assert KEY not in result.stdout + result.stderr + log
    return result


def stored_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(FinancialData))


def test_a_stalled_upstream_hits_the_run_deadline_and_the_run_reports_it(
        app, fake_alphavantage, tmp_path, stall):
    fake_alphavantage.queue_handler(stall)
    result = run_job(app, fake_alphavantage, tmp_path, FETCH_RUN_DEADLINE="1",
                     FETCH_SYMBOL_DEADLINE="60")
    assert (result.returncode, result.stdout) == (1, "")
    reason = "the run's deadline of 1s passed"
    failures = [line.split(" ", 3)[3] for line in result.stderr.splitlines()
                if ": failed: " in line]
    assert failures == [f"financial.fetch_run: IBM: failed: {reason}",
                        f"financial.fetch_run: AAPL: failed: not fetched: {reason}",
                        f"financial.fetch_run: MSFT: failed: not fetched: {reason}"]
    assert [r.params["symbol"] for r in fake_alphavantage.requests] == ["IBM"]
    assert stored_rows(app) == 0
    [run] = history(app)[0].values()
    message = f"0 of 3 symbols stored, 0 new rows, 0 updated; ended early: {reason}"
    assert (run.status, run.message) == ("failed", message)
    assert f"run {run.id} failed: {message}" in result.stderr.splitlines()
    assert {symbol: (row.status, row.error) for symbol, row in history(app)[1][run.id].items()} == {
        "IBM": ("failed", reason), "AAPL": ("not_fetched", f"not fetched: {reason}"),
        "MSFT": ("not_fetched", f"not fetched: {reason}")}


def test_a_stalled_symbol_hits_its_deadline_and_the_others_are_stored(
        app, fake_alphavantage, tmp_path, stall):
    fake_alphavantage.queue_handler(stall)
    fake_alphavantage.queue_fixture(AAPL)
    fake_alphavantage.queue_error("invalid_symbol")
    result = run_job(app, fake_alphavantage, tmp_path, FETCH_SYMBOL_DEADLINE="1")
    assert result.returncode == 1
    assert result.stdout == "AAPL: 10 rows fetched, 10 new, 0 updated\n"
    assert ("IBM: failed: no complete answer from AlphaVantage for IBM within 1s, the "
            "deadline per symbol") in result.stderr
    assert [r.params["symbol"] for r in fake_alphavantage.requests] == ["IBM", "AAPL", "MSFT"]
    assert stored_rows(app) == 10
    [run] = history(app)[0].values()
    assert (run.status, run.message) == ("partial", "1 of 3 symbols stored, 10 new rows, 0 updated")
    assert history(app)[1][run.id]["IBM"].error == (
        "no complete answer from AlphaVantage for IBM within 1s, the deadline per symbol")
