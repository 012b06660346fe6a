"""get_raw_data.main end to end: fake AlphaVantage over a socket, real databases."""
import contextlib
import datetime
import gc
import json
import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Engine

import get_raw_data
from app import SCHEMA_REVISION
from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.models import FinancialData
from financial.records import RECORD_FIELDS
from lib.avantage_api import parse_daily_series
from lib.log_setup import CONTINUATION_INDENT
from tests.fake_alphavantage import (
    AAPL, ALPHAVANTAGE_ERROR_BODIES, ALPHAVANTAGE_FIXTURES, IBM, IBM_DAILY,
)
from scripts.prestart import EXIT_FAILED, EXIT_READY, prepare_database
from tests.helpers import (
    KEY, build_app, free_port, history, isolated_environment, migrate_database,
    naming_twice, run_job, sqlite_url, stored,
)


def test_stores_two_weeks_of_each_symbol_exactly(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_fixture(AAPL)
    status, out, err = run_job(capsys, job_env)
    assert status == 0, err
    assert out.splitlines() == ["IBM: 10 rows fetched, 10 new, 0 updated",
                                "AAPL: 10 rows fetched, 10 new, 0 updated"]
    rows = stored(app)
    assert len(rows) == 20
    assert min(day for _, day in rows) == datetime.date(2023, 3, 13)
    assert rows[("IBM", datetime.date(2023, 3, 22))] == (Decimal("127.0"), Decimal("124.05"),
                                                         3549024)
    sent = [(r.params["function"], r.params["symbol"], r.params["outputsize"], r.params["apikey"])
            for r in fake_alphavantage.requests]
    assert sent == [("TIME_SERIES_DAILY_ADJUSTED", "IBM", "compact", KEY),
                    ("TIME_SERIES_DAILY_ADJUSTED", "AAPL", "compact", KEY)]


def test_rerun_is_idempotent_and_updates_changed_values_in_place(
        app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    assert run_job(capsys, job_env, "--symbols", "ibm")[0] == 0
    fake_alphavantage.queue_fixture(IBM)
    status, out, _ = run_job(capsys, job_env, "--symbols", "IBM")
    assert (status, out) == (0, "IBM: 10 rows fetched, 0 new, 0 updated\n")
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    payload["Time Series (Daily)"]["2023-03-24"]["4. close"] = "125.0001"
    fake_alphavantage.queue_json(payload)
    status, out, _ = run_job(capsys, job_env, "--symbols", "IBM")
    assert (status, out) == (0, "IBM: 10 rows fetched, 0 new, 1 updated\n")
    rows = stored(app)
    assert len(rows) == 10
    assert rows[("IBM", datetime.date(2023, 3, 24))][1] == Decimal("125.0001")


def test_one_bad_symbol_fails_alone(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_error("invalid_symbol")
    fake_alphavantage.queue_fixture(AAPL)
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,NOPE,AAPL")
    assert status == 1
    failures = [line for line in err.splitlines() if ": failed: " in line]
    assert len(failures) == 1 and "NOPE: failed: invalid symbol NOPE" in failures[0]
    assert len(out.splitlines()) == 2
    assert {symbol for symbol, _ in stored(app)} == {"IBM", "AAPL"}


def test_premium_only_falls_back_once_for_the_whole_run(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_error("premium_endpoint")
    fake_alphavantage.queue_fixture(IBM_DAILY)
    fake_alphavantage.queue_fixture(AAPL)
    status, _, err = run_job(capsys, job_env)
    assert status == 0, err
    functions = [r.params["function"] for r in fake_alphavantage.requests]
    assert functions == ["TIME_SERIES_DAILY_ADJUSTED", "TIME_SERIES_DAILY", "TIME_SERIES_DAILY"]
    assert err.count("falls back to TIME_SERIES_DAILY") == 1
    assert len(stored(app, "IBM")) == 10


def daily_version_of(name: str) -> dict:
    """The recorded adjusted answer as TIME_SERIES_DAILY would give it: no adjusted values."""
    payload = json.loads((ALPHAVANTAGE_FIXTURES / name).read_text())
    payload["Meta Data"]["1. Information"] = "Daily Prices (open, high, low, close) and Volumes"
    for day, fields in payload["Time Series (Daily)"].items():
        payload["Time Series (Daily)"][day] = {
            "1. open": fields["1. open"], "2. high": fields["2. high"],
            "3. low": fields["3. low"], "4. close": fields["4. close"],
            "5. volume": fields["6. volume"]}
    return payload


def test_a_free_tier_run_after_an_adjusted_one_keeps_the_adjusted_values(
        app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    assert run_job(capsys, job_env, "--symbols", "IBM", "--days", "60")[0] == 0
    url = "/api/financial_data?symbol=IBM&fields=all&start_date=2023-02-08&end_date=2023-02-09"
    before = app.test_client().get(url).get_json()["data"]
    assert before == [
        {"symbol": "IBM", "date": "2023-02-08", "open_price": "135.71", "high_price": "136.74",
         "low_price": "135.16", "close_price": "135.98", "adjusted_close_price": "134.3229",
         "volume": "4593748", "dividend_amount": "0.00", "split_coefficient": "1.0"},
        {"symbol": "IBM", "date": "2023-02-09", "open_price": "134.99", "high_price": "135.73",
         "low_price": "133.34", "close_price": "133.75", "adjusted_close_price": "133.75",
         "volume": "3918817", "dividend_amount": "1.65", "split_coefficient": "1.0"},
    ]
    fake_alphavantage.queue_error("premium_endpoint")
    fake_alphavantage.queue_json(daily_version_of(IBM))
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM", "--days", "60")
    assert (status, out) == (0, "IBM: 43 rows fetched, 0 new, 0 updated\n"), err
    assert app.test_client().get(url).get_json()["data"] == before


def test_short_term_limit_is_waited_out(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_error("burst_limit")
    fake_alphavantage.queue_fixture(IBM)
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 0, err
    assert "rate limit" in err
    assert out == "IBM: 10 rows fetched, 10 new, 0 updated\n"


def test_a_short_term_limit_that_persists_fails_that_symbol_alone_after_bounded_retries(
        app, capsys, job_env, fake_alphavantage):
    for _ in range(4):  # the first answer and its 3 retries (ALPHAVANTAGE_RATE_LIMIT_RETRIES)
        fake_alphavantage.queue_error("burst_limit")
    fake_alphavantage.queue_fixture(AAPL)
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL")
    assert status == 1
    assert [r.params["symbol"] for r in fake_alphavantage.requests] == ["IBM"] * 4 + ["AAPL"]
    failures = [line for line in err.splitlines() if ": failed: " in line]
    assert len(failures) == 1 and failures[0].endswith(
        "IBM: failed: AlphaVantage short-term rate limit for IBM persisted after 3 waits")
    assert out == "AAPL: 10 rows fetched, 10 new, 0 updated\n"
    assert {symbol for symbol, _ in stored(app)} == {"AAPL"}


def test_spent_daily_quota_stops_the_run_without_more_requests(
        app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_error("daily_quota")
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL,MSFT")
    assert status == 1
    assert len(fake_alphavantage.requests) == 1
    failures = [line for line in err.splitlines() if ": failed: " in line]
    assert len(failures) == 3 and all("daily quota is spent" in line for line in failures)
    assert out == "" and stored(app) == {}


def test_rejected_key_is_reported_without_the_key(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_error("invalid_key", text=f"the parameter apikey {KEY} is invalid")
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 1
    assert "IBM: failed: AlphaVantage rejected the API key" in err


def test_control_characters_an_answer_holds_never_reach_the_terminal(
        app, capsys, job_env, fake_alphavantage):
    """The run's line on stderr quotes AlphaVantage's text, as the log's lines do: escaped."""
    hostile = "the parameter apikey is invalid\x1b]0;owned\x07\x1b[2J\x9b31m"
    fake_alphavantage.queue_error("invalid_key", text=hostile)
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 1
    assert not {"\x1b", "\x07", "\x9b"} & set(err), err
    assert err.splitlines()[-1].endswith(
        "AlphaVantage rejected the API key (asked for IBM): the parameter apikey is "
        "invalid\\x1b]0;owned\\x07\\x1b[2J\\x9b31m")


def test_network_failure_is_one_line_naming_the_symbol(app, capsys, job_env, monkeypatch):
    monkeypatch.setenv("ALPHAVANTAGE_BASE_URL", f"http://127.0.0.1:{free_port()}/query")
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].endswith("ERROR financial.fetch_run: IBM: failed: network failure for IBM "
                             "after 3 retries (NewConnectionError)")
    assert lines[1].endswith(" failed: 0 of 1 symbols stored, 0 new rows, 0 updated")
    log = (Path(job_env["LOG_DIR"]) / "get_raw_data.log").read_text()
    assert log.count("WARNING urllib3.connectionpool: Retrying") == 3, "the file keeps them"


def test_a_failing_alphavantage_is_asked_as_often_as_the_readme_says(
        app, capsys, job_env, fake_alphavantage):
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    documented = re.search(r"HTTP\s+5xx\): each symbol is retried (\d+) times", readme)
    assert documented, "the README no longer says how often a failing request is retried"
    retries = int(documented[1])
    for _ in range(retries + 1):
        fake_alphavantage.queue_response("down", status=500)
    fake_alphavantage.queue_fixture(AAPL)
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL")
    assert status == 1
    assert [r.params["symbol"] for r in fake_alphavantage.requests] == (
        ["IBM"] * (retries + 1) + ["AAPL"])
    assert f"IBM: failed: HTTP 500 from AlphaVantage for IBM after {retries} retries" in err
    assert out == "AAPL: 10 rows fetched, 10 new, 0 updated\n"


def test_retries_wait_as_long_as_the_readme_says(app, capsys, job_env, fake_alphavantage,
                                                 monkeypatch, backoffs):
    """With its default interval and backoff factor, the job's first retry waits the interval."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"the first after `ALPHAVANTAGE_REQUEST_INTERVAL`, the next after 2x and 4x "
                     r"this many seconds \(jittered, at most 30 s, never under the interval\)",
                     readme), "the README no longer says how long a retry waits"
    monkeypatch.delenv("ALPHAVANTAGE_REQUEST_INTERVAL")
    monkeypatch.delenv("ALPHAVANTAGE_BACKOFF_FACTOR")
    for _ in range(4):
        fake_alphavantage.queue_response("down", status=500)
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 1, err
    interval, backoff_factor = 1.0, 0.5  # the settings' defaults, documented in the README
    first, second, third = backoffs
    assert first == interval
    assert 2 * backoff_factor < second < 3 * backoff_factor
    assert 4 * backoff_factor < third < 5 * backoff_factor


def test_requests_wait_as_long_as_the_readme_says(
        app, capsys, job_env, fake_alphavantage, monkeypatch):
    """The job leaves the client's timeouts at their defaults; its deadlines are far here."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    documented = re.search(r"each request waits up to ([\d.]+) s to connect and up to "
                           r"([\d.]+) s\s+at a time for the answer", readme)
    assert documented, "the README no longer says how long a request waits"
    timeouts = []
    send = requests.Session.request

    def noting_timeout(session, method, url, **kwargs):
        timeouts.append(kwargs.get("timeout"))
        return send(session, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", noting_timeout)
    fake_alphavantage.queue_fixture(IBM)
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 0, err
    assert timeouts == [(float(documented[1]), float(documented[2]))]


def test_malformed_payload_fails_that_symbol(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_response("<html>busy</html>", content_type="text/html")
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 1
    assert "IBM: failed:" in err and "not JSON" in err


def test_full_asks_for_the_whole_history_and_keeps_it(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    status, out, _ = run_job(capsys, job_env, "--symbols", "IBM", "--full")
    assert status == 0
    assert fake_alphavantage.requests[0].params["outputsize"] == "full"
    assert out == "IBM: 100 rows fetched, 100 new, 0 updated\n"


class _Cycle:
    """An object in a reference cycle, which only the garbage collector frees; says when it does."""

    def __init__(self, freed: list[str]) -> None:
        self.itself = self
        self.freed = freed

    def __del__(self) -> None:
        self.freed.append("freed")


def test_a_run_leaves_the_garbage_collector_as_it_found_it(
        app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    freed: list[str] = []
    _Cycle(freed)  # garbage from before the run, which it freezes
    threshold = gc.get_threshold()
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 0, err
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, 0)
    gc.collect()
    assert freed == ["freed"]


def test_the_collector_spared_by_a_run_still_collects_its_garbage():
    freed: list[str] = []
    with get_raw_data._collector_spared():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == get_raw_data.JOB_GC_THRESHOLD
        for _ in range(2 * get_raw_data.JOB_GC_THRESHOLD):  # no gc.collect(): on its own
            _Cycle(freed)
        assert freed
    assert gc.get_freeze_count() == 0


def test_a_run_that_raises_still_gives_the_collector_back():
    threshold = gc.get_threshold()
    with pytest.raises(KeyboardInterrupt), get_raw_data._collector_spared():
        raise KeyboardInterrupt
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, 0)


def test_dry_run_prints_records_and_writes_nothing(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_fixture(AAPL)
    status, out, err = run_job(capsys, job_env, "--dry-run", "--days", "1")
    assert status == 0
    records = json.loads(out)
    assert records == [
        {"symbol": "IBM", "date": "2023-03-24", "open_price": "123.36", "high_price": "125.40",
         "low_price": "122.88", "close_price": "125.29", "adjusted_close_price": "125.29",
         "volume": "3812644", "dividend_amount": "0.00", "split_coefficient": "1.0"},
        {"symbol": "AAPL", "date": "2023-03-24", "open_price": "158.86", "high_price": "160.34",
         "low_price": "157.85", "close_price": "160.25", "adjusted_close_price": "160.25",
         "volume": "59256343", "dividend_amount": "0.00", "split_coefficient": "1.0"},
    ]
    assert all(list(record) == list(RECORD_FIELDS) for record in records)
    assert "IBM: 1 rows fetched (dry run, nothing stored)" in err
    assert stored(app) == {}


def test_a_dry_run_with_a_failed_symbol_still_prints_one_json_array_of_the_others(
        app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_error("invalid_symbol")
    status, out, err = run_job(capsys, job_env, "--dry-run", "--days", "1",
                               "--symbols", "IBM,NOPE")
    assert status == 1
    assert [(record["symbol"], record["date"]) for record in json.loads(out)] == [
        ("IBM", "2023-03-24")]
    assert "NOPE: failed: invalid symbol NOPE" in err
    assert stored(app) == {}


def test_a_dry_run_on_a_database_without_the_schema_leaves_it_without(
        capsys, monkeypatch, empty_database_url, tmp_path):
    """Writes nothing: not even the migrations a stored run would apply first."""
    for name, value in isolated_environment(
            APP_ENV="testing", DATABASE_URL=empty_database_url,
            LOG_DIR=str(tmp_path / "log")).items():
        monkeypatch.setenv(name, value)
    status, out, _ = run_job(capsys, {"LOG_DIR": str(tmp_path / "log")}, "--dry-run",
                             "--days", "1", "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert (status, [record["date"] for record in json.loads(out)]) == (0, ["2023-03-24"])
    engine = create_engine(empty_database_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry run", "stored run"])
def test_only_a_stored_run_creates_the_folder_of_the_sqlite_file(
        capsys, monkeypatch, tmp_path, dry_run):
    """A dry run writes nothing: not even an empty folder where the database would go."""
    folder, log_dir = tmp_path / "no" / "such" / "folder", tmp_path / "log"
    for name, value in isolated_environment(
            APP_ENV="testing", DATABASE_URL=f"sqlite:///{folder / 'financial.db'}",
            LOG_DIR=str(log_dir)).items():
        monkeypatch.setenv(name, value)
    status, out, err = run_job(capsys, {"LOG_DIR": str(log_dir)}, *(["--dry-run"] * dry_run),
                               "--days", "1", "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert status == 0, err
    if dry_run:
        assert [record["date"] for record in json.loads(out)] == ["2023-03-24"]
        assert [path.name for path in tmp_path.iterdir()] == ["log"]
    else:
        assert out == "IBM: 1 rows fetched, 1 new, 0 updated\n"
        assert (folder / "financial.db").is_file()


@pytest.mark.parametrize("argv, env, problems", [
    ([], {}, ["no API key: set ALPHAVANTAGE_API_KEY"]),
    (["--schedule", "61 18 * * *"], {"ALPHAVANTAGE_API_KEY": KEY, "CACHE_TYPE": "NoSuchCache"},
     ["--schedule: the cron expression '61 18 * * *' cannot be used",
      "CACHE_TYPE 'NoSuchCache' is no cache backend installed here"]),
    (["--dry-run", "--from-file", "x.json"], {"ALPHAVANTAGE_RETRY_WAIT": "soon"},
     ["ALPHAVANTAGE_RETRY_WAIT must be a number", "no such file: x.json"]),
], ids=["no key", "bad cron and cache", "dry run"])
def test_a_usage_error_creates_no_folder(capsys, monkeypatch, tmp_path, argv, env, problems):
    """Neither LOG_DIR nor the SQLite file's folder: the next try, fixed, creates them."""
    log_dir, folder = tmp_path / "log", tmp_path / "data" / "streaming"
    for name, value in isolated_environment(**{
            "APP_ENV": "testing", "DATABASE_URL": f"sqlite:///{folder / 'financial.db'}",
            "LOG_DIR": str(log_dir), "CACHE_TYPE": "SimpleCache", **env}).items():
        monkeypatch.setenv(name, value)
    status, out, err = run_job(capsys, {"LOG_DIR": str(log_dir)}, *argv)
    assert (status, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == len(problems), err
    for line, start in zip(lines, problems):
        assert line.startswith(f"get_raw_data: {start}"), err
    assert list(tmp_path.iterdir()) == []


def test_help_names_every_option_of_the_contract_and_every_exit_status_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exited:
        get_raw_data.main(["--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    for option in ("--symbols", "--days", "--full", "--from-file", "--dry-run", "--schedule",
                   "--help"):
        assert option in usage, option
    statuses = (get_raw_data.EXIT_OK, get_raw_data.EXIT_FAILED, get_raw_data.EXIT_USAGE,
                get_raw_data.EXIT_INTERRUPTED)
    for status in statuses:
        assert re.search(rf"[:,] {status} ", " ".join(usage.split())), status


def test_from_file_needs_no_key(app, capsys, job_env, monkeypatch):
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "")
    status, out, _ = run_job(capsys, job_env, "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM),
                             "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM_DAILY))
    assert status == 0
    assert out.splitlines() == ["IBM: 10 rows fetched, 10 new, 0 updated",
                                "IBM: 10 rows fetched, 10 new, 0 updated"]
    assert len(stored(app)) == 20


def test_the_whole_sample_is_loaded_when_no_key_is_set(app, capsys, job_env, monkeypatch):
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "")
    status, out, err = run_job(capsys, job_env, "--sample-if-no-key")
    assert status == 0
    assert ("no ALPHAVANTAGE_API_KEY set; loading the bundled sample data (IBM and AAPL, 100 "
            "trading days from 2022-10-31 to 2023-03-24) from data/fixtures/ instead") in err
    assert out.splitlines() == ["AAPL: 100 rows fetched, 100 new, 0 updated",
                                "IBM: 100 rows fetched, 100 new, 0 updated"]
    for symbol in ("IBM", "AAPL"):
        days = sorted(day for _, day in stored(app, symbol))
        assert (len(days), days[0], days[-1]) == (
            100, datetime.date(2022, 10, 31), datetime.date(2023, 3, 24))


def test_sample_loads_the_sample_even_with_a_key(app, capsys, job_env, fake_alphavantage):
    status, out, _ = run_job(capsys, job_env, "--sample", "--days", "3")
    assert status == 0
    assert out.splitlines() == ["AAPL: 3 rows fetched, 3 new, 0 updated",
                                "IBM: 3 rows fetched, 3 new, 0 updated"]
    assert fake_alphavantage.requests == []


def test_a_key_that_cannot_fetch_says_how_to_load_the_sample(app, capsys, job_env, monkeypatch):
    monkeypatch.setenv("ALPHAVANTAGE_BASE_URL", f"http://127.0.0.1:{free_port()}/query")
    status, out, err = run_job(capsys, job_env, "--sample-if-no-key")
    assert (status, out) == (1, "")
    assert err.splitlines()[-1] == ("get_raw_data: to load the bundled sample data instead, "
                                    "run .venv/bin/python get_raw_data.py --sample")
    assert stored(app) == {}


def test_a_run_that_calls_no_alphavantage_takes_any_alphavantage_function(
        app, capsys, job_env, monkeypatch, fake_alphavantage):
    """The function is what the job asks AlphaVantage for: saved answers say their own."""
    monkeypatch.setenv("ALPHAVANTAGE_FUNCTION", "TIME_SERIES_WEEKLY")
    status, out, _ = run_job(capsys, job_env, "--sample", "--days", "3")
    assert status == 0
    assert out.splitlines() == ["AAPL: 3 rows fetched, 3 new, 0 updated",
                                "IBM: 3 rows fetched, 3 new, 0 updated"]
    assert fake_alphavantage.requests == []


@pytest.mark.parametrize("argv, env, message", [
    ([], {"ALPHAVANTAGE_API_KEY": None}, "no API key"),
    (["--symbols", "IBM,BAD SYMBOL"], {}, "get_raw_data: --symbols: invalid symbol(s) BAD SYMBOL"),
    ([], {"SYMBOLS": "IBM,b@d"}, "get_raw_data: SYMBOLS: invalid symbol(s) b@d"),
    ([], {"SYMBOLS": " , "}, "get_raw_data: SYMBOLS: invalid symbol(s) (none given)"),
    (["--from-file", "/nonexistent/x.json"], {}, "no such file: /nonexistent/x.json"),
    (["--symbols", "IBM", "--from-file", "x.json"], {}, "--symbols cannot be combined"),
    (["--symbols", "IBM", "--sample"], {}, "--symbols cannot be combined"),
    (["--sample", "--from-file", "x.json"], {}, "--sample cannot be combined with --from-file"),
    (["--from-file", str(PROJECT_ROOT / "data")], {},
     f"get_raw_data: a folder, not a file: {PROJECT_ROOT / 'data'}"),
    (["--from-file", os.devnull], {}, f"get_raw_data: not a regular file: {os.devnull}"),
    # An empty CRON is a mistake (an unset shell variable), not a bare --schedule;
    # --dry-run makes the job stop at its usage errors even where the mistake is missed.
    (["--schedule", "", "--dry-run"], {"ALPHAVANTAGE_API_KEY": KEY},
     "get_raw_data: --schedule: the cron expression '' must have 5 fields"),
    ([], {"ALPHAVANTAGE_FUNCTION": "TIME_SERIES_WEEKLY"}, "ALPHAVANTAGE_FUNCTION: unsupported"),
    ([], {"ALPHAVANTAGE_RETRY_WAIT": "soon"}, "ALPHAVANTAGE_RETRY_WAIT must be a number"),
    ([], {"APP_ENV": "staging"}, "APP_ENV must be one of"),
    (["--symbols", ""], {}, "get_raw_data: --symbols: invalid symbol(s) (none given)"),
    ([], {"DATABASE_URL": "notaurl"}, "DATABASE_URL is not a database URL"),
    ([], {"DATABASE_URL": "mysql+pymysql://u:pw@127.0.0.1:1"}, "DATABASE_URL names no database"),
    ([], {"DATABASE_URL": "mysql+pymysql://u:pw@h:abc/db"}, "DATABASE_URL is not a database URL"),
    ([], {"DATABASE_URL": "mysql://u:pw@h/db"},
     "DATABASE_URL needs the driver module 'MySQLdb', which is not installed"),
    # A "[" that opens no IPv6 address: urllib refuses the URL outright.
    ([], {"DATABASE_URL": "mysql+pymysql://u:pw@[::1/db"}, "DATABASE_URL is not a database URL"),
    ([], {"ALPHAVANTAGE_BASE_URL": "http://[::1/query"},
     "ALPHAVANTAGE_BASE_URL must be an http:// or https:// URL"),
])
def test_usage_and_configuration_errors_exit_2(app, capsys, job_env, monkeypatch, argv, env,
                                               message):
    for name, value in env.items():
        monkeypatch.setenv(name, "" if value is None else value)
    status, out, err = run_job(capsys, job_env, *argv)
    assert status == 2
    assert message in err and out == ""


NO_KEY = "get_raw_data: no API key: set ALPHAVANTAGE_API_KEY"
BAD_CRON = "get_raw_data: --schedule: the cron expression '61 18 * * *' cannot be used"


@pytest.mark.parametrize("argv, env, expected", [
    (["--schedule", "61 18 * * *"], {}, [NO_KEY, BAD_CRON]),
    (["--symbols", "IBM,BAD SYMBOL", "--schedule", "61 18 * * *", "--dry-run"],
     {"FETCH_TIMEZONE": "Mars/Olympus", "ALPHAVANTAGE_FUNCTION": "TIME_SERIES_WEEKLY"},
     [NO_KEY, "get_raw_data: --symbols: invalid symbol(s) BAD SYMBOL",
      "get_raw_data: ALPHAVANTAGE_FUNCTION: unsupported",
      "get_raw_data: --schedule cannot be combined with --dry-run",
      "get_raw_data: FETCH_TIMEZONE: unknown time zone 'Mars/Olympus'", BAD_CRON]),
    (["--sample", "--from-file", "x.json", "--symbols", "IBM"], {},
     ["get_raw_data: --sample cannot be combined with --from-file",
      "get_raw_data: --symbols cannot be combined with --from-file or --sample",
      "get_raw_data: no such file: x.json"]),
    ([], {"ALPHAVANTAGE_RETRY_WAIT": "soon", "EXPORT_MAX_ROWS": "0", "LOG_LEVEL": "loud"},
     ["get_raw_data: ALPHAVANTAGE_RETRY_WAIT must be a number, got 'soon'",
      "get_raw_data: EXPORT_MAX_ROWS must be 1 or more, got 0",
      "get_raw_data: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
      NO_KEY]),
    (["--symbols", "IBM,BAD SYMBOL"], {"DATABASE_URL": "oracle+nosuch://u@h/db",
                                       "ALPHAVANTAGE_RETRY_WAIT": "soon"},
     ["get_raw_data: ALPHAVANTAGE_RETRY_WAIT must be a number, got 'soon'", NO_KEY,
      "get_raw_data: --symbols: invalid symbol(s) BAD SYMBOL",
      "get_raw_data: DATABASE_URL names an unknown database driver 'oracle+nosuch'"]),
    # The client cannot read it either: named once, as the setting it is.
    ([], {"ALPHAVANTAGE_API_KEY": KEY, "ALPHAVANTAGE_BASE_URL": "http://[::1/query"},
     ["get_raw_data: ALPHAVANTAGE_BASE_URL must be an http:// or https:// URL"]),
], ids=["key and schedule", "all settings", "inputs", "malformed settings",
        "settings and command line", "unreadable base URL"])
def test_every_usage_and_configuration_problem_is_named_in_one_go(
        capsys, job_env, monkeypatch, argv, env, expected):
    """One try tells the operator all that is wrong: no fix-one-and-retry round per problem."""
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, out, err = run_job(capsys, job_env, *argv)
    assert (status, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == len(expected), err
    for line, start in zip(lines, expected):
        assert line.startswith(start), err


def test_every_setting_building_the_app_refuses_is_named_with_the_others(
        capsys, job_env, monkeypatch, tmp_path):
    """The settings the app checks are named with the malformed ones, in one try.

    Not RATE_LIMIT: the job has no rate limit.
    """
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    for name, value in {"APP_ENV": "staging", "ALPHAVANTAGE_RETRY_WAIT": "soon",
                        "LOG_DIR": str(blocker / "log"),
                        "DATABASE_URL": "oracle+nosuch://user:s3cret@host/db",
                        "CACHE_TYPE": "NoSuchCache", "RATE_LIMIT": "lots"}.items():
        monkeypatch.setenv(name, value)
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        "get_raw_data: APP_ENV must be one of development, production, testing, got 'staging'",
        "get_raw_data: ALPHAVANTAGE_RETRY_WAIT must be a number, got 'soon'",
        f"get_raw_data: LOG_DIR {blocker}/log cannot hold the log files (Not a directory)",
        "get_raw_data: DATABASE_URL names an unknown database driver 'oracle+nosuch'",
        "get_raw_data: CACHE_TYPE 'NoSuchCache' is no cache backend installed here; "
        "expected e.g. SimpleCache or RedisCache",
    ]


@pytest.mark.parametrize("argv", [["--days", "0"], ["--days", "36501"], ["--days", "9" * 30],
                                  ["--days", "1_0"], ["--days", "\u0661\u0664"], ["--days", "+14"],
                                  ["--days", " 14"], ["--days", "3", "--full"], ["--bogus"]])
def test_bad_options_exit_2(capsys, job_env, argv):
    with pytest.raises(SystemExit) as exited:
        get_raw_data.main(argv)
    assert exited.value.code == 2


def _install_failing_trigger(app, failing_day: str) -> None:
    """Make the database itself reject one IBM row, as a full disk or lost server would."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            db.session.execute(text(
                "CREATE TRIGGER fail_one BEFORE INSERT ON financial_data "
                f"WHEN NEW.symbol = 'IBM' AND NEW.date = '{failing_day}' "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
        else:
            db.session.execute(text(
                "CREATE TRIGGER fail_one BEFORE INSERT ON financial_data FOR EACH ROW "
                f"BEGIN IF NEW.symbol = 'IBM' AND NEW.date = '{failing_day}' THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'disk full'; END IF; END"))
        db.session.commit()


def _drop_trigger(app) -> None:
    with app.app_context():
        db.session.execute(text("DROP TRIGGER IF EXISTS fail_one"))
        db.session.commit()


def synthetic_payload(symbol: str, days: list[datetime.date]) -> dict:
    """A TIME_SERIES_DAILY answer for ``days``, all with the same prices."""
    bar = {"1. open": "10.0000", "2. high": "12.0000", "3. low": "9.0000",
           "4. close": "11.0000", "5. volume": "100"}
    return {"Meta Data": {"2. Symbol": symbol},
            "Time Series (Daily)": {day.isoformat(): dict(bar) for day in days}}


def test_failure_mid_symbol_leaves_its_rows_exactly_as_they_were(
        app, capsys, job_env, fake_alphavantage):
    days = [datetime.date(2000, 1, 3) + datetime.timedelta(days=n) for n in range(700)]
    fake_alphavantage.queue_json(synthetic_payload("IBM", days[:100]))
    assert run_job(capsys, job_env, "--symbols", "IBM", "--full")[0] == 0
    before = stored(app)
    assert len(before) == 100
    # 600 new rows (two upsert chunks) and one changed row; the second chunk fails.
    grown = synthetic_payload("IBM", days)
    grown["Time Series (Daily)"][days[0].isoformat()]["1. open"] = "9.5000"
    fake_alphavantage.queue_json(grown)
    fake_alphavantage.queue_fixture(AAPL)
    _install_failing_trigger(app, days[650].isoformat())
    try:
        status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL", "--full")
    finally:
        _drop_trigger(app)
    assert status == 1
    ibm_lines = [line for line in err.splitlines() if "IBM" in line]
    assert len(ibm_lines) == 1, "one line, no retry of an error that is not a lock conflict"
    assert "IBM: failed: database error (" in ibm_lines[0]
    assert "its rows are unchanged" in ibm_lines[0] and "Traceback" not in err
    assert "Traceback" in (Path(job_env["LOG_DIR"]) / "get_raw_data.log").read_text()
    assert stored(app, "IBM") == before
    assert out == "AAPL: 100 rows fetched, 100 new, 0 updated\n"
    runs, outcomes = history(app)
    failed_run = max(runs)
    assert runs[failed_run].status == "partial"
    assert outcomes[failed_run]["IBM"].status == "failed"
    assert outcomes[failed_run]["IBM"].error.startswith("database error (")
    assert (outcomes[failed_run]["AAPL"].status, outcomes[failed_run]["AAPL"].rows_new) == (
        "ok", 100)


@pytest.mark.redis
def test_stored_changes_clear_cached_statistics_for_every_worker(
        redis_app, capsys, job_env, fake_alphavantage, monkeypatch):
    monkeypatch.setenv("CACHE_TYPE", "RedisCache")
    monkeypatch.setenv("CACHE_REDIS_URL", redis_app.config["CACHE_REDIS_URL"])
    url = "/api/statistics?symbol=IBM&start_date=2023-03-24&end_date=2023-03-24"
    fake_alphavantage.queue_fixture(IBM)
    assert run_job(capsys, job_env, "--symbols", "IBM")[0] == 0
    worker = redis_app.test_client()
    assert worker.get(url).get_json()["data"]["average_daily_open_price"] == 123.36
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    payload["Time Series (Daily)"]["2023-03-24"]["1. open"] = "124.00"
    fake_alphavantage.queue_json(payload)
    assert run_job(capsys, job_env, "--symbols", "IBM")[0] == 0
    assert worker.get(url).get_json()["data"]["average_daily_open_price"] == 124.0


def test_a_cache_that_cannot_be_invalidated_is_reported_without_failing_the_run(
        app, capsys, job_env, monkeypatch):
    monkeypatch.setenv("CACHE_TYPE", "RedisCache")
    monkeypatch.setenv("CACHE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    status, out, err = run_job(capsys, job_env, "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert (status, out) == (0, "IBM: 10 rows fetched, 10 new, 0 updated\n")
    assert "could not invalidate the cached answers (ConnectionError: " in err
    assert "the API may serve answers up to CACHE_DEFAULT_TIMEOUT (300s) old" in err
    assert len(stored(app)) == 10


def test_two_runs_at_once_leave_no_duplicates(app, tmp_path):
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"])
    files = ["--from-file", str(ALPHAVANTAGE_FIXTURES / IBM),
             "--from-file", str(ALPHAVANTAGE_FIXTURES / AAPL), "--full"]
    runs = [subprocess.Popen([sys.executable, "get_raw_data.py", *files], cwd=PROJECT_ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    results = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], results
    with app.app_context():
        total = db.session.scalar(select(func.count()).select_from(FinancialData))
    assert total == 200
    expected = {}
    for name in (IBM, AAPL):
        series = parse_daily_series(json.loads((ALPHAVANTAGE_FIXTURES / name).read_text()))
        expected.update({(series.symbol, bar.date): (bar.open_price, bar.close_price, bar.volume)
                         for bar in series.bars})
    assert stored(app) == expected


def test_brings_a_fresh_database_up_to_date_and_logs_to_log_dir(capsys, job_env, monkeypatch,
                                                                tmp_path):
    fresh = f"sqlite:///{tmp_path / 'fresh' / 'financial.db'}"
    monkeypatch.setenv("DATABASE_URL", fresh)
    status, out, _ = run_job(capsys, job_env, "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert status == 0
    assert out == "IBM: 10 rows fetched, 10 new, 0 updated\n"
    log = (Path(job_env["LOG_DIR"]) / "get_raw_data.log").read_text()
    assert "Running upgrade" in log
    assert "INFO financial.fetch_run: IBM: 10 rows fetched, 10 new, 0 updated" in log
    fresh_app = build_app(fresh, tmp_path / "log")
    assert len(stored(fresh_app)) == 10
    with fresh_app.app_context():
        db.engine.dispose()


def test_first_runs_at_once_on_a_new_sqlite_file_migrate_one_at_a_time(tmp_path):
    """SQLite commits each DDL statement alone: two runs migrating together would interleave."""
    fresh = f"sqlite:///{tmp_path / 'fresh' / 'financial.db'}"
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=fresh)
    runs = [subprocess.Popen([sys.executable, "get_raw_data.py", "--from-file",
                              str(ALPHAVANTAGE_FIXTURES / IBM)], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    results = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], results
    fresh_app = build_app(fresh, tmp_path / "log")
    assert len(stored(fresh_app)) == 10
    assert len(history(fresh_app)[0]) == 4
    with fresh_app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("newer, named", [
    (["0099"], "revision 0099"),
    # A newer release's two branches: the list, then its own clause.
    (["00bb", "0099", "00aa"], "revisions 0099, 00aa and 00bb"),
])
def test_a_schema_a_newer_release_migrated_is_used_as_it_is(capsys, job_env, monkeypatch,
                                                            empty_database_url, tmp_path,
                                                            newer, named):
    database = empty_database_url
    migrate_database(database, tmp_path / "log")
    engine = create_engine(database)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
        for revision in newer:
            connection.execute(text("INSERT INTO alembic_version VALUES (:revision)"),
                               {"revision": revision})
    monkeypatch.setenv("DATABASE_URL", database)
    status, out, _ = run_job(capsys, job_env, "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert (status, out) == (0, "IBM: 10 rows fetched, 10 new, 0 updated\n")
    log = (Path(job_env["LOG_DIR"]) / "get_raw_data.log").read_text()
    assert (f"the database's schema is at {named}, which this release does not know "
            "(a newer release migrated it): using it as it is") in log
    assert "Running upgrade" not in log
    with build_app(database, tmp_path / "log").app_context():  # the container's start
        assert prepare_database(engine, timeout=5) == EXIT_READY
    engine.dispose()


@pytest.mark.parametrize("known, unknown", [
    ("0001", "ffff_unknown"),
    (SCHEMA_REVISION, "ffff_unknown"),  # the current one, read first
    (SCHEMA_REVISION, "0000_unknown"),  # the unknown one, read first
])
def test_a_migration_history_alembic_refuses_stops_the_job_with_one_line(
        capsys, job_env, monkeypatch, empty_database_url, known, unknown):
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        # A known revision beside one these scripts lack: Alembic cannot plan an upgrade.
        connection.execute(text("CREATE TABLE alembic_version "
                                "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        connection.execute(text("INSERT INTO alembic_version VALUES (:known), (:unknown)"),
                           {"known": known, "unknown": unknown})
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    status, out, err = run_job(capsys, job_env, "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert (status, out) == (1, "")
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"get_raw_data: bringing the schema up to date failed: Can't locate revision identified "
        f"by '{unknown}'; hint: the database's migration history (table alembic_version) "
        "does not fit this release's migrations: start the release that last migrated it, "
        "or repair that table; nothing fetched"], "said once, the log's record in the file only"
    _, after = _record_of(err.splitlines()[0], Path(job_env["LOG_DIR"]))
    assert not after.startswith(CONTINUATION_INDENT), "no traceback: the line says it all"


def _record_of(said: str, log_dir: Path) -> tuple[str, str]:
    """Return the job's log record of ``said``, a line on stderr: its line, and the log after it.

    The record has the line's words: its logger's name is their ``get_raw_data:``.
    """
    log = (log_dir / "get_raw_data.log").read_text(encoding="utf-8")
    [logged] = [line for line in log.splitlines() if line.endswith(f" ERROR {said}")]
    return logged, log.split(logged + "\n", 1)[1]


def _read_terminal(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side of the terminal is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


# Runs get_raw_data.py with argv[3:], as a script (its start-up's SIGINT handler
# too), sending itself the signals argv[1] and argv[2] (by number) as it reads the
# first file: the first asks the job to stop, the second comes before the job could,
# as a second Ctrl-C does.
TWICE_SIGNALLED_JOB = """
import os, runpy, sys
import lib.avantage_api
first, second = int(sys.argv[1]), int(sys.argv[2])
read = lib.avantage_api.read_saved_response
def signalled(*args, **kwargs):
    os.kill(os.getpid(), first)
    os.kill(os.getpid(), second)
    return read(*args, **kwargs)
lib.avantage_api.read_saved_response = signalled
sys.argv = ["get_raw_data.py", *sys.argv[3:]]
runpy.run_path("get_raw_data.py", run_name="__main__")
"""


@pytest.mark.parametrize("first, second, status, said", [
    # Dies as SIGINT kills (130 in a shell), so that a script running the job stops too.
    (signal.SIGINT, signal.SIGINT, -signal.SIGINT, "SIGINT received again: stopped at once"),
    (signal.SIGTERM, signal.SIGINT, -signal.SIGINT,
     "SIGINT received after SIGTERM: stopped at once"),
    (signal.SIGINT, signal.SIGTERM, -signal.SIGTERM, None),  # dies as SIGTERM kills
    (signal.SIGTERM, signal.SIGTERM, -signal.SIGTERM, None),
], ids=["SIGINT, SIGINT", "SIGTERM, SIGINT", "SIGINT, SIGTERM", "SIGTERM, SIGTERM"])
def test_a_second_signal_stops_the_job_at_once_without_a_traceback(tmp_path, first, second,
                                                                   status, said):
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=sqlite_url(tmp_path))
    job = subprocess.run(
        [sys.executable, "-c", TWICE_SIGNALLED_JOB, str(int(first)), str(int(second)),
         "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM),
         "--from-file", str(ALPHAVANTAGE_FIXTURES / AAPL)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (job.returncode, job.stdout) == (status, ""), job.stderr
    assert "Traceback" not in job.stderr and "KeyboardInterrupt" not in job.stderr
    stops = [line.split(" WARNING get_raw_data: ")[-1] for line in job.stderr.splitlines()
             if "received" in line]
    assert stops == ([said] if said else []), job.stderr


# On PYTHONPATH as sitecustomize, which Python imports before the job's script: the
# first import of the module JOB_GATE names says so on the descriptor READY, then waits
# for the test on HOLD, the job still in its start-up. Deterministic: the job goes no
# further before the test is done with it.
START_UP_GATE = """
import os, sys
name, ready, hold = os.environ["JOB_GATE"].split(",")
class Gate:
    def find_spec(self, fullname, path=None, target=None):
        if fullname == name:
            sys.meta_path.remove(self)
            os.write(int(ready), b"!")
            os.read(int(hold), 1)
sys.meta_path.insert(0, Gate())
"""


@pytest.mark.parametrize("held_at", [
    "flask",  # the imports at the top of get_raw_data.py
    "flask_sqlalchemy.cli",  # main(): create_app binding the database, LOG_DIR made
])
def test_a_sigint_during_start_up_ends_the_job_in_one_line_as_sigint_does(tmp_path, held_at):
    """Before stop_on_signals takes over: no traceback, and killed by SIGINT (130 in a
    shell), so that a script running the job stops too; nothing written."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(START_UP_GATE)
    ready_read, ready = os.pipe()
    hold, hold_write = os.pipe()
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=sqlite_url(tmp_path / "db"),
                               PYTHONPATH=str(tmp_path / "site"),
                               JOB_GATE=f"{held_at},{ready},{hold}")
    try:
        job = subprocess.Popen(
            [sys.executable, "get_raw_data.py", "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, pass_fds=(ready, hold),
            # As a terminal's foreground job starts, even if this test's SIGINT is ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        os.close(ready)
        os.close(hold)
        at_gate = os.read(ready_read, 1)  # or b"" if the job ended before it
        job.send_signal(signal.SIGINT)
        out, err = job.communicate(timeout=120)
    finally:
        os.close(ready_read)
        os.close(hold_write)
    assert at_gate == b"!", err
    assert (job.returncode, out, err) == (
        -signal.SIGINT, "", "get_raw_data: SIGINT received during start-up: stopped\n")
    made = {path.name: path.stat().st_size for folder in ("log", "db")
            for path in (tmp_path / folder).rglob("*") if path.is_file()}
    assert "financial.db" not in made and not any(made.values()), made


def test_progress_is_shown_on_a_terminal_only(app, tmp_path):
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"])
    terminal, terminal_side = pty.openpty()
    run = subprocess.Popen(
        [sys.executable, "get_raw_data.py", "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM),
         "--from-file", str(ALPHAVANTAGE_FIXTURES / AAPL)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=terminal_side, text=True)
    os.close(terminal_side)
    out, _ = run.communicate(timeout=120)
    shown = _read_terminal(terminal)
    assert run.returncode == 0
    assert f"[1/2] {IBM} ..." in shown and f"[2/2] {AAPL} ..." in shown
    assert "[1/2]" not in out


@pytest.mark.parametrize("unbuffered", ["1", ""])  # as in the image (Dockerfile), and not
@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("output", ["reader-gone", "disk-full"])
def test_a_reader_that_went_away_ends_the_output_not_the_run(app, tmp_path, unbuffered, dry_run,
                                                             output):
    """``get_raw_data.py | head -1``: stored symbols stay stored and recorded ok, no traceback.

    So with ``> out.txt`` on a full disk. The output is small: a buffered
    stdout fails only in Python's last flush at exit.
    """
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
                               PYTHONUNBUFFERED=unbuffered)
    if output == "disk-full":
        writer = os.open("/dev/full", os.O_WRONLY)  # every write to stdout fails: ENOSPC
    else:
        reader, writer = os.pipe()
        os.close(reader)  # every write to stdout fails: EPIPE
    try:
        run = subprocess.run(
            [sys.executable, "get_raw_data.py", "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM),
             "--from-file", str(ALPHAVANTAGE_FIXTURES / AAPL), "--days", "3",
             *(["--dry-run"] * dry_run)],
            cwd=PROJECT_ROOT, env=env, stdout=writer, stderr=subprocess.PIPE, text=True,
            timeout=120)
    finally:
        os.close(writer)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr
    assert "failed" not in run.stderr
    if dry_run:
        assert stored(app) == {}
        return
    runs, symbols = history(app)
    (run_id,) = runs
    assert run.stderr.splitlines()[-1] == (
        f"run {run_id} ok: 2 of 2 files stored, 6 new rows, 0 updated")
    assert {symbol: row.status for symbol, row in symbols[run_id].items()} == {
        "IBM": "ok", "AAPL": "ok"}
    assert len(stored(app)) == 6


@pytest.mark.parametrize("closed", [(1,), (1, 2), (0, 1, 2)],
                         ids=["stdout", "stdout and stderr", "all three"])
def test_standard_streams_closed_at_start_end_neither_the_run_nor_its_output(
        app, tmp_path, closed):
    """``get_raw_data.py >&-`` once stored and recorded the run, then ended in a traceback."""
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"])
    run = subprocess.run(
        [sys.executable, "get_raw_data.py", "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM),
         "--days", "3"],
        cwd=PROJECT_ROOT, env=env, timeout=120,
        preexec_fn=lambda: [os.close(fd) for fd in closed])
    assert run.returncode == 0
    runs, symbols = history(app)
    (run_id,) = runs
    assert runs[run_id].status == "ok" and symbols[run_id]["IBM"].status == "ok"
    assert len(stored(app)) == 3
    log = (tmp_path / "log" / "get_raw_data.log").read_text()
    assert "Traceback" not in log


STREAMS_PROBE = """
import os, sys
from get_raw_data import _standard_streams_opened
taken = open(sys.argv[1], "w") if sys.argv[1:] else None  # a file opened before: fd 1
_standard_streams_opened()
sys.stderr.write(f"{os.readlink('/proc/self/fd/1')} {sys.stdout.fileno()}\\n")
"""


@pytest.mark.parametrize("taken", [False, True], ids=["fd 1 free", "fd 1 taken by a file"])
def test_a_closed_stdout_gets_the_null_device_on_its_own_descriptor_unless_taken(
        tmp_path, taken):
    """The null device goes on fd 1, where a stray write would otherwise land in a file;
    a file already there keeps it, and stdout then writes elsewhere."""
    file = tmp_path / "opened-first"
    probe = subprocess.run([sys.executable, "-c", STREAMS_PROBE, *([str(file)] * taken)],
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                           preexec_fn=lambda: os.close(1))
    target, stdout_fd = probe.stderr.split()
    if taken:
        assert (target, stdout_fd != "1") == (str(file), True)
    else:
        assert (target, stdout_fd) == ("/dev/null", "1")


def test_unreachable_database_is_one_line_on_stderr_and_a_traceback_in_the_log(
        capsys, job_env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://api:hunter2@127.0.0.1:1/financial")
    status, out, err = run_job(capsys, job_env, "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert status == 1 and out == ""
    assert err.splitlines() == [
        "get_raw_data: database unavailable (OperationalError 2003: Can't connect to MySQL "
        "server on '127.0.0.1' ([Errno 111] Connection refused); hint: cannot connect: check "
        "the host and port in DATABASE_URL and that the server runs); nothing fetched"]
    assert "Traceback" not in err and "hunter2" not in err
    _, after = _record_of(err.splitlines()[0], Path(job_env["LOG_DIR"]))
    assert after.startswith(f"{CONTINUATION_INDENT}Traceback"), "with its cause"
    log = (Path(job_env["LOG_DIR"]) / "get_raw_data.log").read_text()
    assert "hunter2" not in log


@pytest.mark.parametrize("lock, migrated", [("fetch", True), ("migrate", False)])
def test_a_lock_file_that_cannot_be_opened_is_one_line_and_nothing_written(
        capsys, job_env, monkeypatch, tmp_path, lock, migrated):
    """A read-only disk: the job stops cleanly before it writes, and says which file."""
    database = sqlite_url(tmp_path)
    if migrated:
        migrate_database(database, tmp_path / "log")
        capsys.readouterr()  # the migration's own lines
    blocked = tmp_path / f"financial.db.{lock}-lock"
    blocked.unlink(missing_ok=True)  # left by the migration, which waits for a run in progress
    blocked.mkdir()  # refused like a file on a read-only disk, even to root
    monkeypatch.setenv("DATABASE_URL", database)
    status, out, err = run_job(capsys, job_env, "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert (status, out) == (1, "")
    assert err == (f"get_raw_data: the lock file {blocked} cannot be opened (Is a directory); "
                   "nothing fetched\n")
    assert "Traceback" not in err
    _, after = _record_of(err.rstrip("\n"), Path(job_env["LOG_DIR"]))
    assert not after.startswith(CONTINUATION_INDENT), "no traceback: the line says it all"
    if migrated:
        application = build_app(database, tmp_path / "log")
        assert history(application)[0] == {}, "no run recorded, none half-written"
        with application.app_context():
            db.engine.dispose()


def test_the_container_start_and_the_cli_say_in_one_line_a_lock_file_cannot_be_opened(
        tmp_path):
    database = sqlite_url(tmp_path)
    blocked = tmp_path / "financial.db.migrate-lock"
    blocked.mkdir()
    said = f"the lock file {blocked} cannot be opened (Is a directory); nothing was migrated"
    application = build_app(database, tmp_path / "log")
    with application.app_context():
        assert prepare_database(db.engine, timeout=5) == EXIT_FAILED
        db.engine.dispose()
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=database, FLASK_SKIP_DOTENV="1")
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (1, f"Error: {said}")
    assert "Traceback" not in result.stderr


def test_flask_db_upgrade_names_a_database_it_cannot_use_in_one_line(tmp_path):
    (tmp_path / "financial.db").mkdir()  # SQLite cannot open a folder
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                               DATABASE_URL=sqlite_url(tmp_path), FLASK_SKIP_DOTENV="1")
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        1, "Error: database error: OperationalError: unable to open database file; hint: the "
           "SQLite file cannot be opened: check that DATABASE_URL names a file in a folder this "
           "user may write, and the open files limit (ulimit -n); the migration stopped: run "
           "it again once the database can be used")
    assert "Traceback" not in result.stderr


@contextlib.contextmanager
def _full_disk(database: str, *, history_too: bool = False, run_end_too: bool = False,
               mysql_errno: int = 1114) -> Iterator[None]:
    """Make the database refuse to grow, as on a full disk: SQLITE_FULL, or MySQL's error 1114.

    The run's own row still fits (SQLite has room left in its page). With
    ``history_too`` a symbol's row in the run history does not fit either,
    with ``run_end_too`` nor does the run's end (its status and message).
    ``mysql_errno`` 3 is the error of a full disk under MySQL's temporary files.
    """
    engine = create_engine(database)
    sqlite = engine.dialect.name == "sqlite"
    refused = [] if sqlite else ["financial_data"]  # SQLite: by its page limit alone
    if history_too:
        refused.append("fetch_run_symbols")
    if run_end_too:
        refused.append("fetch_runs")
    with engine.begin() as connection:
        for table in refused:
            statement = (_NO_ROOM_SQLITE[table] if sqlite else _NO_ROOM_MYSQL[table].format(
                table=table, errno=mysql_errno, message=_NO_ROOM_MESSAGES[mysql_errno]))
            connection.execute(text(statement))
    if sqlite:
        def no_growth(dbapi_connection, _record):
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        event.listen(Engine, "connect", no_growth)
    try:
        yield
    finally:
        if sqlite:
            event.remove(Engine, "connect", no_growth)
        with engine.begin() as connection:
            for table in refused:
                connection.execute(text(f"DROP TRIGGER no_room_{table}"))
        engine.dispose()


_REFUSE_MYSQL = "SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = {errno}, MESSAGE_TEXT = '{message}'"
_NO_ROOM_MYSQL = {
    "financial_data": ("CREATE TRIGGER no_room_{table} BEFORE INSERT ON {table} FOR EACH ROW "
                       + _REFUSE_MYSQL),
    "fetch_runs": ("CREATE TRIGGER no_room_{table} BEFORE UPDATE ON {table} FOR EACH ROW "
                   "BEGIN IF NEW.finished_at IS NOT NULL THEN " + _REFUSE_MYSQL
                   + "; END IF; END"),
}
_NO_ROOM_MYSQL["fetch_run_symbols"] = _NO_ROOM_MYSQL["financial_data"]
_NO_ROOM_MESSAGES = {
    1114: "The table ''{table}'' is full",
    3: "Error writing file ''/tmp/MYfd=42'' (Errcode: 28 \"No space left on device\")",
}
# A symbol's history row, or the run's end, that grows past the room SQLite's
# page limit leaves: SQLITE_FULL.
_NO_ROOM_SQLITE = {
    "fetch_run_symbols": (
        "CREATE TRIGGER no_room_fetch_run_symbols AFTER INSERT ON fetch_run_symbols "
        "BEGIN UPDATE fetch_run_symbols SET error = hex(zeroblob(500000)) "
        "WHERE run_id = NEW.run_id AND symbol = NEW.symbol; END"),
    "fetch_runs": (
        "CREATE TRIGGER no_room_fetch_runs AFTER UPDATE OF finished_at ON fetch_runs "
        "WHEN NEW.finished_at IS NOT NULL "
        "BEGIN UPDATE fetch_runs SET message = hex(zeroblob(500000)) WHERE id = NEW.id; END"),
}


def _migrated_with_saved_ibm(monkeypatch, database: str, tmp_path) -> tuple:
    """Migrate ``database``, save 700 days of IBM, and set the job's environment to store them.

    Returns the saved file and the job's environment.
    """
    migrate_database(database, tmp_path / "log")
    days = [datetime.date(2000, 1, 3) + datetime.timedelta(days=n) for n in range(700)]
    saved = tmp_path / "ibm.json"
    saved.write_text(json.dumps(synthetic_payload("IBM", days)), encoding="utf-8")
    job_env = {"APP_ENV": "testing", "DATABASE_URL": database, "CACHE_TYPE": "SimpleCache",
               "LOG_DIR": str(tmp_path / "joblog")}
    for name, value in isolated_environment(**job_env).items():
        monkeypatch.setenv(name, value)
    return saved, job_env


def test_a_full_disk_is_named_as_such_and_leaves_no_row(
        capsys, monkeypatch, empty_database_url, tmp_path):
    """Not "the database stopped answering": a full disk answers at once (the log may be on it)."""
    database = empty_database_url
    saved, job_env = _migrated_with_saved_ibm(monkeypatch, database, tmp_path)
    with _full_disk(database):
        status, out, err = run_job(capsys, job_env, "--from-file", str(saved), "--full")
    error_name = ("OperationalError" if database.startswith("sqlite")
                  else "OperationalError 1114")
    reason = f"database error ({error_name}: the database's disk is full); its rows are unchanged"
    assert (status, out) == (1, "")
    assert f"ibm.json: failed: {reason}" in err and "Traceback" not in err
    application = build_app(database, tmp_path / "log")
    runs, outcomes = history(application)
    assert [(run.status, bool(run.finished_at)) for run in runs.values()] == [("failed", True)]
    assert outcomes[min(runs)]["IBM"].error == reason
    assert stored(application) == {}
    with application.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("empty_database_url, mysql_errno, error_name", [
    ("sqlite", None, "OperationalError"),
    pytest.param("mysql", 1114, "OperationalError 1114", marks=pytest.mark.mysql),
    # PyMySQL raises InternalError for codes below 1000.
    pytest.param("mysql", 3, "InternalError 3", marks=pytest.mark.mysql),
], indirect=["empty_database_url"])
def test_a_full_disk_that_refuses_the_failure_too_ends_the_run_naming_it(
        capsys, monkeypatch, empty_database_url, tmp_path, fake_alphavantage, mysql_errno,
        error_name):
    """No request of the quota for symbols that cannot be stored, nor "stopped answering"."""
    database = empty_database_url
    migrate_database(database, tmp_path / "log")
    days = [datetime.date(2000, 1, 3) + datetime.timedelta(days=n) for n in range(700)]
    fake_alphavantage.queue_json(synthetic_payload("IBM", days))
    job_env = {"APP_ENV": "testing", "DATABASE_URL": database, "CACHE_TYPE": "SimpleCache",
               "LOG_DIR": str(tmp_path / "joblog"), "ALPHAVANTAGE_API_KEY": KEY,
               "ALPHAVANTAGE_BASE_URL": fake_alphavantage.url,
               "ALPHAVANTAGE_REQUEST_INTERVAL": "0"}
    for name, value in isolated_environment(**job_env).items():
        monkeypatch.setenv(name, value)
    with _full_disk(database, history_too=True, mysql_errno=mysql_errno or 1114):
        status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL,MSFT", "--full")
    assert (status, out) == (1, "")
    assert [r.params["symbol"] for r in fake_alphavantage.requests] == ["IBM"]
    assert (f"IBM: failed: database error ({error_name}: the database's disk is full); "
            "its rows are unchanged") in err
    for symbol in ("AAPL", "MSFT"):
        assert f"{symbol}: failed: not fetched: the database's disk is full" in err
    assert "stopped answering" not in err and "Traceback" not in err
    application = build_app(database, tmp_path / "log")
    runs, outcomes = history(application)
    (run,) = runs.values()
    assert (run.status, bool(run.finished_at)) == ("failed", True)
    assert run.message == ("0 of 3 symbols stored, 0 new rows, 0 updated; "
                           "ended early: the database's disk is full")
    assert f"run {run.id} failed: {run.message}" in err
    assert outcomes[run.id] == {}, "no symbol's row half-written"
    assert stored(application) == {}
    with application.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("empty_database_url", [
    "sqlite", pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
def test_a_run_whose_end_a_full_disk_refuses_names_the_run_it_leaves_running(
        capsys, monkeypatch, empty_database_url, tmp_path):
    """Not "the run could not be recorded": it was, with what it stored, and stays running."""
    database = empty_database_url
    saved, job_env = _migrated_with_saved_ibm(monkeypatch, database, tmp_path)
    with _full_disk(database, history_too=True, run_end_too=True):
        status, out, err = run_job(capsys, job_env, "--from-file", str(saved), "--full")
    application = build_app(database, tmp_path / "log")
    runs, outcomes = history(application)
    (run,) = runs.values()
    assert (status, out, run.status, run.finished_at, outcomes[run.id]) == (
        1, "", "running", None, {})
    assert stored(application) == {}
    said = [line for line in err.splitlines() if f"run {run.id} failed" in line]
    assert len(said) == 1, "said once: " + "\n".join(said)
    assert said[0] == err.splitlines()[-1]
    head = (f"get_raw_data: run {run.id} failed: 0 of 1 files stored, 0 new rows, "
            "0 updated; ended early: the database's disk is full; its end could not be recorded (")
    tail = ("; hint: the database's disk is full: free space on it, or raise its quota), so it "
            "reads 'running' until the next run marks it interrupted")
    assert said[0].startswith(head) and said[0].endswith(tail), said[0]
    assert "the run could not be recorded" not in err and "Traceback" not in err
    _, after = _record_of(said[0], tmp_path / "joblog")
    assert after.startswith(f"{CONTINUATION_INDENT}Traceback"), "with its cause"
    with application.app_context():
        db.engine.dispose()


def test_a_saved_error_answer_is_reported_as_that_error(app, capsys, job_env, tmp_path):
    saved = tmp_path / "quota.json"
    saved.write_text(json.dumps(dict([ALPHAVANTAGE_ERROR_BODIES["daily_quota"]])))
    status, _, err = run_job(capsys, job_env, "--from-file", str(saved),
                             "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert status == 1
    assert "quota.json: failed: the AlphaVantage daily quota is spent" in err
    assert len(stored(app)) == 10, "a saved file's error does not stop the other files"


@pytest.mark.parametrize("written", [KEY, f"\\u{ord(KEY[0]):04x}{KEY[1:]}"],
                         ids=["as-is", "json-escaped"])
def test_a_saved_answer_naming_the_key_is_reported_without_it(app, capsys, job_env, tmp_path,
                                                              written):
    """AlphaVantage's daily quota answer quotes the key; saved, it must not leak from the job."""
    saved = tmp_path / "quota.json"
    saved.write_text('{"Information": "We have detected your API key as ' + written
                     + ' and our standard API rate limit is 25 requests per day."}')
    status, _, err = run_job(capsys, job_env, "--from-file", str(saved))
    assert status == 1
    assert ("quota.json: failed: the AlphaVantage daily quota is spent: We have detected your "
            "API key as [redacted] and our standard API rate limit is 25 requests per day."
            in err)
    [run] = history(app)[0].values()
    assert KEY not in run.message and "API key as [redacted]" in run.message


def test_a_malformed_saved_file_is_recorded_against_its_symbol(app, capsys, job_env, tmp_path):
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    payload["Time Series (Daily)"]["2023-03-24"]["2. high"] = "1.0000"  # below the low
    saved = tmp_path / "broken.json"
    saved.write_text(json.dumps(payload))
    status, _, err = run_job(capsys, job_env, "--from-file", str(saved))
    reason = "IBM 2023-03-24: '2. high' 1.0000 is below '3. low' 122.88"
    assert status == 1
    assert [line.split(" ERROR financial.fetch_run: ")[1] for line in err.splitlines()
            if ": failed: " in line] == [f"broken.json: failed: {reason}"]
    runs, symbols = history(app)
    (run_id,) = runs
    assert (runs[run_id].status, runs[run_id].message) == (
        "failed", "0 of 1 files stored, 0 new rows, 0 updated")
    assert (symbols[run_id]["IBM"].status, symbols[run_id]["IBM"].error) == ("failed", reason)


NAMED_TWICE = [
    # Not one of the two stored unsaid: json.loads would keep the second.
    (("Time Series (Daily)",), "2023-03-24", {"4. close": "124.0000"},
     "IBM: day '2023-03-24' is named more than once in 'Time Series (Daily)'"),
    ((), "Time Series (Daily)", {}, "IBM: the response names 'Time Series (Daily)' more than once"),
    (("Meta Data",), "1. Information", "Daily Time Series",
     "IBM: 'Meta Data' names '1. Information' more than once"),
    (("Time Series (Daily)", "2023-03-24"), "1. open", "123.00",
     "IBM: day '2023-03-24' names '1. open' more than once"),
]
NAMED_TWICE_IDS = ["a day", "series at the top", "meta data's information", "a day's open"]


@pytest.mark.parametrize("where, key, first, reason", NAMED_TWICE, ids=NAMED_TWICE_IDS)
def test_a_saved_file_naming_a_key_twice_fails_alone_naming_where(
        app, capsys, job_env, tmp_path, where, key, first, reason):
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    saved = tmp_path / "twice.json"
    saved.write_text(naming_twice(payload, where, key, first))
    job = run_job(capsys, job_env, "--from-file", str(saved),
                  "--from-file", str(ALPHAVANTAGE_FIXTURES / AAPL))
    run, symbols = _only_aapl_stored(app, job, failed=f"twice.json: failed: {reason}")
    assert (run.status, run.message) == ("partial", "1 of 2 files stored, 10 new rows, 0 updated")
    assert (symbols["IBM"].status, symbols["IBM"].error) == ("failed", reason)


def _only_aapl_stored(app, job: tuple[int, str, str], failed: str) -> tuple:
    """Check that the job (run_job's status, out, err) stored AAPL alone, saying ``failed``
    of the other; return its run and its symbols' outcomes."""
    status, out, err = job
    assert (status, out) == (1, "AAPL: 10 rows fetched, 10 new, 0 updated\n")
    assert [line.split(" ERROR financial.fetch_run: ")[1] for line in err.splitlines()
            if ": failed: " in line] == [failed]
    assert stored(app, "IBM") == {} and len(stored(app, "AAPL")) == 10
    runs, symbols = history(app)
    (run_id,) = runs
    return runs[run_id], symbols[run_id]


@pytest.mark.parametrize("where, key, reason", [
    ((), "Meta Data", "the response names 'Meta Data' more than once"),
    (("Meta Data",), "2. Symbol", "'Meta Data' names '2. Symbol' more than once"),
], ids=["meta data at the top", "meta data's symbol"])
def test_a_saved_file_naming_its_symbol_twice_fails_naming_the_file_alone(
        app, capsys, job_env, tmp_path, where, key, reason):
    """Which of IBM and AAPL it holds is anyone's guess: no symbol is charged with it."""
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    first = {**payload["Meta Data"], "2. Symbol": "AAPL"} if key == "Meta Data" else "AAPL"
    saved = tmp_path / "twice.json"
    saved.write_text(naming_twice(payload, where, key, first))
    job = run_job(capsys, job_env, "--from-file", str(saved),
                  "--from-file", str(ALPHAVANTAGE_FIXTURES / AAPL))
    run, symbols = _only_aapl_stored(app, job, failed=f"twice.json: failed: {reason}")
    assert (run.status, run.message) == (
        "partial", f"1 of 2 files stored, 10 new rows, 0 updated; twice.json: {reason}")
    assert set(symbols) == {"AAPL"}


@pytest.mark.parametrize("where, key, first, reason", NAMED_TWICE, ids=NAMED_TWICE_IDS)
def test_an_answer_naming_a_key_twice_fails_that_symbol_alone(
        app, capsys, job_env, fake_alphavantage, where, key, first, reason):
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    fake_alphavantage.queue_response(naming_twice(payload, where, key, first))
    fake_alphavantage.queue_fixture(AAPL)
    job = run_job(capsys, job_env, "--symbols", "IBM,AAPL")
    _, symbols = _only_aapl_stored(app, job, failed=f"IBM: failed: {reason}")
    assert (symbols["IBM"].status, symbols["IBM"].error) == ("failed", reason)


def test_a_file_whose_symbol_is_not_a_ticker_fails_alone(app, capsys, job_env, tmp_path):
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    payload["Meta Data"]["2. Symbol"] = "ibm corp; drop table x"
    saved = tmp_path / "odd.json"
    saved.write_text(json.dumps(payload))
    status, _, err = run_job(capsys, job_env, "--from-file", str(saved))
    assert status == 1
    assert "odd.json: failed: the payload's symbol 'ibm corp; drop table x' is not a ticker" in err
    assert stored(app) == {}


def test_premium_only_full_history_stops_the_run(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_error("premium_endpoint")
    fake_alphavantage.queue_error("premium_full_output")
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL", "--full")
    assert status == 1
    assert len(fake_alphavantage.requests) == 2, "AAPL must not spend a request"
    assert "AAPL: failed: not fetched: premium-only" in err


START_UP_PROBE = """
import sys
import get_raw_data
status = get_raw_data.main(sys.argv[1:])
print(sorted(name for name in ("alembic", "flask_restx", "webargs", "flask_limiter", "requests",
                               "croniter", "sqlalchemy.dialects.postgresql", "app.metrics",
                               "prometheus_client", "flask_cors", "financial.schedule")
             if name in sys.modules))
sys.exit(status)
"""


def test_a_run_from_files_on_a_current_schema_loads_no_web_or_migration_code(
        sqlite_app, tmp_path):
    """Start-up time counts in every run: the job imports only what it uses.

    Nor the HTTP client (saved files), the schedule (none), PostgreSQL's dialect
    (SQLite), the API's metrics (it looks up no cached answer) or CORS.
    """
    environment = isolated_environment(
        APP_ENV="testing", DATABASE_URL=sqlite_app.config["SQLALCHEMY_DATABASE_URI"],
        LOG_DIR=str(tmp_path), CACHE_TYPE="SimpleCache")
    saved = str(ALPHAVANTAGE_FIXTURES / "IBM_TIME_SERIES_DAILY_compact_2024-06-18.json")
    job = subprocess.run([sys.executable, "-c", START_UP_PROBE, "--from-file", saved],
                         cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True,
                         timeout=60)
    assert job.returncode == 0, job.stderr
    assert job.stdout.splitlines()[-1] == "[]"


# Counts the collections the script starts before it has defined main(), while it
# imports, and sees how main() finds the collector.
IMPORT_COLLECTIONS_PROBE = """
import argparse, gc, runpy, sys
collections, found = [], {}
def count(phase, info):
    script = vars(sys.modules["__main__"])
    if phase == "start" and "__file__" in script and "main" not in script:
        collections.append(info["generation"])
gc.callbacks.append(count)
parse_args = argparse.ArgumentParser.parse_args
def parse_args_seeing_the_collector(parser, *args):
    found.setdefault("enabled", gc.isenabled())
    found.setdefault("imports frozen", gc.get_freeze_count() > 0)
    return parse_args(parser, *args)
argparse.ArgumentParser.parse_args = parse_args_seeing_the_collector
sys.argv = ["get_raw_data.py", "--help"]
try:
    runpy.run_path("get_raw_data.py", run_name="__main__")
except SystemExit:
    pass
print(collections, found)
"""


def test_the_job_collects_no_garbage_while_it_imports_and_runs_with_the_collector_on(tmp_path):
    """The imports make objects that live as long as the job: no collection walks them."""
    job = subprocess.run([sys.executable, "-c", IMPORT_COLLECTIONS_PROBE], cwd=PROJECT_ROOT,
                         env=isolated_environment(LOG_DIR=str(tmp_path)), capture_output=True,
                         text=True, timeout=60)
    assert job.returncode == 0, job.stderr
    assert job.stdout.splitlines()[-1] == "[] {'enabled': True, 'imports frozen': True}"
