"""Every fetch run is recorded: what it printed is what the history holds, on every backend.

Runs that must overlap, die or be stopped run as real processes against the
fake AlphaVantage, whose answers can be held back until the test releases them.
"""
import datetime
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import create_engine
from werkzeug.wrappers import Request, Response

from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.fetch_run import RUN_LOCK, Job, RunHooks, RunSettings, recorded_run
from financial.models import FetchRun, FetchRunSymbol
from financial.runs import INTERRUPTED_MESSAGE, iso_utc, one_line, utc_now
from lib.avantage_api import DailySeries
from lib.locks import database_lock
from tests.fake_alphavantage import (
    AAPL, ALPHAVANTAGE_ERROR_BODIES, ALPHAVANTAGE_FIXTURES, IBM, error_body,
)
from tests.helpers import (
    build_app, dispose_engines, history, isolated_environment, run_job, scrape, stored, wait_for,
)

SUMMARY = re.compile(r"(?P<symbol>\S+): (?P<fetched>\d+) rows fetched, (?P<new>\d+) new, "
                     r"(?P<updated>\d+) updated")
FAILURE = re.compile(r" ERROR financial\.fetch_run: (?P<label>\S+): failed: (?P<reason>.*)")
RUN_LINE = re.compile(r"run (?P<id>\d+) (?P<status>[a-z_]+): (?P<message>.*)")
PROCESS_SECONDS = 60


def symbol_columns(row: FetchRunSymbol) -> tuple:
    return (row.status, row.rows_fetched, row.rows_new, row.rows_updated, row.newest_date,
            row.error)


def assert_history_matches_output(app, out: str, err: str) -> FetchRun:
    """Check the run's rows in both tables against the lines it printed; return the run."""
    lines = [RUN_LINE.fullmatch(line) for line in err.splitlines()]
    [printed] = [match for match in lines if match]
    runs, symbols = history(app)
    run = runs[int(printed["id"])]
    assert (run.status, run.message) == (printed["status"], printed["message"])
    assert run.trigger == "manual" and run.finished_at >= run.started_at
    expected = {}
    for match in map(SUMMARY.fullmatch, out.splitlines()):
        assert match, "stdout holds only summary lines"
        expected[match["symbol"]] = ("ok", int(match["fetched"]), int(match["new"]),
                                     int(match["updated"]))
    for match in filter(None, map(FAILURE.search, err.splitlines())):
        status = "not_fetched" if match["reason"].startswith("not fetched: ") else "failed"
        expected[match["label"]] = (status, 0, 0, 0, None, one_line(match["reason"]))
    found = {symbol: symbol_columns(row) for symbol, row in symbols[run.id].items()}
    assert {symbol: columns[:4] for symbol, columns in found.items()} == {
        symbol: columns[:4] for symbol, columns in expected.items()}
    for symbol, columns in expected.items():
        if columns[0] == "ok":
            assert found[symbol][4] is not None and found[symbol][5] is None, symbol
        else:
            assert found[symbol][4:] == columns[4:], symbol
    assert (run.rows_new, run.rows_updated) == (
        sum(columns[2] for columns in expected.values()),
        sum(columns[3] for columns in expected.values()))
    return run


def test_a_stored_run_prints_what_its_rows_hold(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_fixture(AAPL)
    status, out, err = run_job(capsys, job_env)
    assert status == 0
    run = assert_history_matches_output(app, out, err)
    assert (run.status, run.message) == ("ok", "2 of 2 symbols stored, 20 new rows, 0 updated")
    _, symbols = history(app)
    assert symbols[run.id]["IBM"].newest_date == datetime.date(2023, 3, 24)
    fake_alphavantage.queue_fixture(IBM)
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM")
    assert status == 0
    assert assert_history_matches_output(app, out, err).message == (
        "1 of 1 symbols stored, 0 new rows, 0 updated")


@pytest.fixture
def far_from_utc():
    """Run the test in Tokyo's time zone (UTC+9, all year), so local times are hours off UTC."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_a_run_is_timed_in_utc_whatever_the_machine_s_time_zone(
        app, capsys, job_env, fake_alphavantage, far_from_utc):
    fake_alphavantage.queue_fixture(IBM)
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
    status, _, err = run_job(capsys, job_env, "--symbols", "IBM")
    after = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert status == 0, err
    [run] = history(app)[0].values()
    assert before <= run.started_at <= run.finished_at <= after

    client = app.test_client()
    [listed] = client.get("/api/fetch_runs").get_json()["data"]
    assert (listed["started_at"], listed["finished_at"]) == (
        f"{run.started_at.isoformat()}Z", f"{run.finished_at.isoformat()}Z")
    samples = scrape(client)
    assert samples[("financial_last_fetch_run_started_seconds", ())] == (
        run.started_at.replace(tzinfo=datetime.UTC).timestamp())
    assert samples[("financial_newest_stored_date_seconds", (("symbol", "IBM"),))] == (
        1679616000)  # 2023-03-24, midnight UTC


def test_a_partial_run_records_the_failed_symbol_and_its_reason(
        app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_error("invalid_symbol")
    fake_alphavantage.queue_fixture(AAPL)
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,NOPE,AAPL")
    assert status == 1
    run = assert_history_matches_output(app, out, err)
    assert (run.status, run.message) == (
        "partial", "2 of 3 symbols stored, 20 new rows, 0 updated")
    _, symbols = history(app)
    assert symbols[run.id]["NOPE"].error.startswith("invalid symbol NOPE")


def test_a_spent_quota_fails_the_run_and_skips_the_rest(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_error("daily_quota")
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL,MSFT")
    assert status == 1
    run = assert_history_matches_output(app, out, err)
    assert run.status == "failed"
    _, symbols = history(app)
    assert [symbols[run.id][name].status for name in ("IBM", "AAPL", "MSFT")] == [
        "failed", "not_fetched", "not_fetched"]


def test_a_rejected_key_is_recorded_without_the_key(app, capsys, job_env, fake_alphavantage):
    key = job_env["ALPHAVANTAGE_API_KEY"]
    fake_alphavantage.queue_error("invalid_key", text=f"the parameter apikey {key} is invalid")
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL")
    assert status == 1
    run = assert_history_matches_output(app, out, err)
    _, symbols = history(app)
    assert run.status == "failed"
    assert all(key not in row.error for row in symbols[run.id].values())
    assert key not in run.message


def error_text(case: str) -> str:
    return ALPHAVANTAGE_ERROR_BODIES[case][1]


# A file that fails before naming its symbol: its bytes, and the reason given.
UNNAMED_FAILURES = [
    pytest.param(b"\xff{}", "cannot read a JSON response (UnicodeDecodeError)", id="not-utf-8"),
    pytest.param(b"{not json", "cannot read a JSON response (JSONDecodeError)", id="not-json"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "cannot read a JSON response (RecursionError)",
                 id="nested-too-deep"),
    pytest.param(error_body("daily_quota").encode(),
                 f"the AlphaVantage daily quota is spent: {error_text('daily_quota')}",
                 id="daily-quota"),
    pytest.param(error_body("burst_limit").encode(),
                 f"AlphaVantage short-term rate limit: {error_text('burst_limit')}",
                 id="burst-limit"),
    pytest.param(error_body("premium_endpoint").encode(),
                 f"premium-only AlphaVantage request: {error_text('premium_endpoint')}",
                 id="premium-only"),
    pytest.param(error_body("invalid_key").encode(),
                 f"AlphaVantage rejected the API key: {error_text('invalid_key')}",
                 id="rejected-key"),
    pytest.param(error_body("invalid_symbol").encode(),
                 f"invalid symbol: AlphaVantage says: {error_text('invalid_symbol')}",
                 id="invalid-symbol"),
    pytest.param(error_body("unknown_function").encode(),
                 f"AlphaVantage error: {error_text('unknown_function')}", id="other-error"),
    pytest.param(json.dumps({"Note": "Down for maintenance."}).encode(),
                 "AlphaVantage notice: Down for maintenance.", id="other-notice"),
    pytest.param(b"[]", "the response is not a JSON object", id="not-an-object"),
    pytest.param(b"{}", "no symbol: none given and no 'Meta Data' / '2. Symbol' in the payload",
                 id="no-symbol"),
    pytest.param(json.dumps({"Meta Data": {"2. Symbol": "ibm corp"}}).encode(),
                 "the payload's symbol 'ibm corp' is not a ticker", id="not-a-ticker"),
]


@pytest.mark.parametrize("content, reason", UNNAMED_FAILURES)
def test_a_saved_file_that_names_no_symbol_is_named_once_in_the_run_message(
        app, capsys, job_env, tmp_path, content, reason):
    saved = tmp_path / "bad.json"
    saved.write_bytes(content)
    status, out, err = run_job(capsys, job_env, "--from-file", str(saved),
                               "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    assert status == 1
    runs, symbols = history(app)
    [run] = runs.values()
    assert (run.status, run.message) == (
        "partial", f"1 of 2 files stored, 10 new rows, 0 updated; bad.json: {reason}")
    assert list(symbols[run.id]) == ["IBM"]
    assert f"run {run.id} partial: {run.message}" in err.splitlines()
    failures = [match.groups() for match in map(FAILURE.search, err.splitlines()) if match]
    assert failures == [("bad.json", reason)]


def test_a_dry_run_is_not_recorded(app, capsys, job_env, fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM)
    assert run_job(capsys, job_env, "--symbols", "IBM", "--dry-run")[0] == 0
    assert history(app) == ({}, {})


# --- runs as processes: killed, overlapping, stopped ----------------------------------

class HeldAnswer:
    """A queued answer that holds its request until the test releases it."""

    def __init__(self, body: bytes | str) -> None:
        self.body = body
        self.released = threading.Event()

    def __call__(self, _request: Request) -> Response:
        self.released.wait(timeout=PROCESS_SECONDS)
        return Response(self.body, content_type="application/json")


@pytest.fixture
def held():
    """Make held answers; release them all at the end so no server thread stays blocked."""
    answers = []

    def _hold(fixture: str | None = None, *, error: str | None = None) -> HeldAnswer:
        """Hold a recorded payload, or one of ALPHAVANTAGE_ERROR_BODIES."""
        body = error_body(error) if error else (ALPHAVANTAGE_FIXTURES / fixture).read_bytes()
        answers.append(HeldAnswer(body))
        return answers[-1]

    yield _hold
    for answer in answers:
        answer.released.set()


@pytest.fixture
def shared_cache_worker(redis_app, job_env, monkeypatch):
    """Give the fetch job redis_app's Redis cache; return a client of that API worker.

    After ``job_env``, whose per-process cache it replaces.
    """
    monkeypatch.setenv("CACHE_TYPE", "RedisCache")
    monkeypatch.setenv("CACHE_REDIS_URL", redis_app.config["CACHE_REDIS_URL"])
    return redis_app.test_client()


@pytest.fixture
def start_job(tmp_path, job_env):
    """Start get_raw_data.py as a process; yield a starter; kill leftovers at the end."""
    processes = []

    def _start(*argv: str, **env: str) -> tuple[subprocess.Popen, os.PathLike]:
        stderr_path = tmp_path / f"job{len(processes)}.err"
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "get_raw_data.py", *argv], cwd=PROJECT_ROOT,
                env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=stderr)
        processes.append(process)
        return process, stderr_path

    yield _start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=PROCESS_SECONDS)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    out, _ = process.communicate(timeout=PROCESS_SECONDS)
    return process.returncode, out.decode()


def test_a_killed_run_is_marked_interrupted_by_the_next(app, capsys, job_env, fake_alphavantage,
                                                        held, start_job):
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_handler(held(AAPL))
    killed, _ = start_job("--symbols", "IBM,AAPL")
    wait_for(lambda: len(fake_alphavantage.requests) == 2, "the run to ask for AAPL")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=PROCESS_SECONDS)
    runs, symbols = history(app)
    [dead] = runs.values()
    assert (dead.status, dead.finished_at, dead.rows_new) == ("running", None, 10)
    assert {symbol: row.status for symbol, row in symbols[dead.id].items()} == {"IBM": "ok"}

    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_fixture(AAPL)
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL")
    assert status == 0, err
    runs, symbols = history(app)
    dead, later = runs[dead.id], runs[max(runs)]
    assert (dead.status, dead.message) == ("interrupted", INTERRUPTED_MESSAGE)
    assert dead.finished_at == later.started_at and dead.rows_new == 10
    assert {symbol: row.status for symbol, row in symbols[dead.id].items()} == {"IBM": "ok"}
    assert later.status == "ok" and (later.rows_new, later.rows_updated) == (10, 0)
    assert len(stored(app)) == 20


def test_two_runs_at_once_take_turns_and_are_both_recorded(app, job_env, fake_alphavantage,
                                                           held, start_job):
    first_answer = held(IBM)
    for answer in (first_answer, AAPL, IBM, AAPL):
        if isinstance(answer, str):
            fake_alphavantage.queue_fixture(answer)
        else:
            fake_alphavantage.queue_handler(answer)
    jobs = [start_job("--symbols", "IBM,AAPL") for _ in range(2)]
    wait_for(lambda: len(fake_alphavantage.requests) == 1, "one run to ask for IBM")
    wait_for(lambda: any("waiting up to 300s for" in path.read_text() for _, path in jobs),
             "the other run to wait for the lock")
    assert len(fake_alphavantage.requests) == 1, "the waiting run asked nothing"
    first_answer.released.set()
    results = [finish(process) for process, _ in jobs]
    assert [status for status, _ in results] == [0, 0], [path.read_text() for _, path in jobs]

    runs, symbols = history(app)
    first, second = sorted(runs.values(), key=lambda run: run.id)
    assert [run.status for run in (first, second)] == ["ok", "ok"]
    assert second.started_at >= first.finished_at
    assert [(row.rows_new, row.rows_updated) for row in symbols[first.id].values()] == [(10, 0)] * 2
    assert [(row.rows_new, row.rows_updated) for row in symbols[second.id].values()] == [(0, 0)] * 2
    assert [request.params["symbol"] for request in fake_alphavantage.requests] == [
        "IBM", "AAPL", "IBM", "AAPL"]
    assert len(stored(app)) == 20


def test_a_run_that_waits_too_long_fails_naming_the_run_in_progress(
        app, capsys, job_env, fake_alphavantage, held, start_job, monkeypatch):
    answer = held(IBM)
    fake_alphavantage.queue_handler(answer)
    fake_alphavantage.queue_fixture(AAPL)
    running, _ = start_job("--symbols", "IBM,AAPL")
    wait_for(lambda: len(fake_alphavantage.requests) == 1, "the first run to ask for IBM")
    [holder] = history(app)[0].values()

    monkeypatch.setenv("FETCH_LOCK_TIMEOUT", "1")
    status, out, err = run_job(capsys, job_env, "--symbols", "IBM,AAPL")
    assert (status, out) == (1, "")
    started = holder.started_at.isoformat() + "Z"
    assert f"waiting up to 1s for run {holder.id} (started {started}) to finish" in err
    runs, symbols = history(app)
    refused = runs[max(runs)]
    message = (f"gave up after waiting 1s (FETCH_LOCK_TIMEOUT) for run {holder.id} "
               f"(started {started}) to finish; nothing fetched")
    assert (refused.status, refused.message, symbols[refused.id]) == ("failed", message, {})
    assert f"run {refused.id} failed: {message}" in err.splitlines()
    assert runs[holder.id].status == "running"

    answer.released.set()
    assert finish(running)[0] == 0
    assert history(app)[0][holder.id].status == "ok"


def test_an_answer_quoting_text_no_database_stores_fails_its_symbol_alone(
        app, fake_alphavantage, start_job):
    """Valid JSON may escape a lone surrogate (\\udcff), which no UTF-8 column can hold."""
    fake_alphavantage.queue_response('{"Error Message": "odd \\udcff text"}')
    fake_alphavantage.queue_fixture(AAPL)
    process, stderr = start_job("--symbols", "IBM,AAPL")
    status, out = finish(process)
    err = stderr.read_text(encoding="utf-8", errors="backslashreplace")
    assert status == 1 and "Traceback" not in err, err
    reason = "AlphaVantage error for IBM: odd \\udcff text"
    runs, symbols = history(app)
    [run] = runs.values()
    assert (run.status, run.message) == ("partial", "1 of 2 symbols stored, 10 new rows, 0 updated")
    assert {symbol: (row.status, row.error) for symbol, row in symbols[run.id].items()} == {
        "IBM": ("failed", reason), "AAPL": ("ok", None)}
    assert f"IBM: failed: {reason}" in err and out == "AAPL: 10 rows fetched, 10 new, 0 updated\n"


def test_a_saved_file_whose_name_is_not_utf_8_is_named_in_the_run_message(
        app, tmp_path, start_job):
    saved = os.fsdecode(os.fsencode(tmp_path) + b"/bad\xff.json")
    with open(saved, "wb") as file:
        file.write(b"{not json")
    process, stderr = start_job("--from-file", saved,
                                "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM))
    status, _ = finish(process)
    err = stderr.read_text(encoding="utf-8", errors="backslashreplace")
    assert status == 1 and "Traceback" not in err, err
    runs, symbols = history(app)
    [run] = runs.values()
    assert (run.status, run.message) == (
        "partial", "1 of 2 files stored, 10 new rows, 0 updated; "
                   "bad\\udcff.json: cannot read a JSON response (JSONDecodeError)")
    assert list(symbols[run.id]) == ["IBM"]


def test_the_scheduler_catches_up_then_stops_cleanly_on_sigterm(app, job_env, fake_alphavantage,
                                                                held, start_job):
    answer = held(IBM)
    fake_alphavantage.queue_handler(answer)
    # Once a year: on an empty history the last scheduled time was missed, so it runs now.
    scheduler, stderr = start_job("--schedule", "0 0 1 1 *", "--symbols", "IBM,AAPL")
    wait_for(lambda: len(fake_alphavantage.requests) == 1, "the catch-up run to ask for IBM")
    scheduler.send_signal(signal.SIGTERM)
    answer.released.set()
    status, out = finish(scheduler)
    log = stderr.read_text()
    assert status == 0, log
    assert "catch-up run: no run since" in log and "SIGTERM received" in log
    assert "Traceback" not in log

    runs, symbols = history(app)
    [run] = runs.values()
    assert (run.trigger, run.status) == ("schedule", "interrupted")
    assert run.message == "stopped before the end: 1 of 2 symbols stored, 10 new rows, 0 updated"
    assert {symbol: (row.status, row.error) for symbol, row in symbols[run.id].items()} == {
        "IBM": ("ok", None), "AAPL": ("not_fetched", "not fetched: the job was stopped")}
    assert len(stored(app)) == 10 and len(fake_alphavantage.requests) == 1


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
def test_a_dry_run_stops_after_the_current_symbol_as_a_run_does(
        app, job_env, fake_alphavantage, held, start_job, stop_signal):
    answer = held(IBM)
    fake_alphavantage.queue_handler(answer)
    job, stderr = start_job("--dry-run", "--days", "1", "--symbols", "IBM,AAPL")
    wait_for(lambda: len(fake_alphavantage.requests) == 1, "the dry run to ask for IBM")
    job.send_signal(stop_signal)
    answer.released.set()
    status, out = finish(job)
    log = stderr.read_text()
    assert status == 1, log
    assert [record["symbol"] for record in json.loads(out)] == ["IBM"]
    assert "AAPL: failed: not fetched: the job was stopped" in log and "Traceback" not in log
    assert len(fake_alphavantage.requests) == 1, "no request after the stop"
    assert history(app) == ({}, {}) and stored(app) == {}


def test_two_schedulers_at_the_same_time_fetch_once(app, job_env, fake_alphavantage, start_job):
    """A replica's scheduler that waited for another's run of the same time leaves it done."""
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_fixture(AAPL)
    with app.app_context(), database_lock(db.engine, RUN_LOCK, 1):
        # Both find the yearly time missed on an empty history and wait for the lock held here.
        started = [start_job("--schedule", "0 0 1 1 *", "--symbols", "IBM,AAPL")
                   for _ in range(2)]
        for _, stderr in started:
            wait_for(lambda stderr=stderr: "waiting up to 300s" in stderr.read_text(),
                     "both schedulers to wait for the run lock")
    wait_for(lambda: any("skipped: run" in stderr.read_text() for _, stderr in started),
             "the second scheduler to find the time done")
    for scheduler, _ in started:
        scheduler.send_signal(signal.SIGTERM)
    logs = [stderr.read_text() for _, stderr in started]
    assert [finish(scheduler)[0] for scheduler, _ in started] == [0, 0], logs

    runs, symbols = history(app)
    [run] = runs.values()
    assert (run.trigger, run.status, run.rows_new) == ("schedule", "ok", 20)
    assert set(symbols[run.id]) == {"IBM", "AAPL"} and len(stored(app)) == 20
    assert len(fake_alphavantage.requests) == 2
    [skipped] = [log for log in logs if "skipped: run" in log]
    assert (f"skipped: run {run.id} (started {iso_utc(run.started_at)}) already ran the "
            "scheduled time; nothing fetched") in skipped


YEARLY = "0 0 1 1 *"  # on an empty history its last time was missed: the first start catches up


def asked(fake_alphavantage) -> dict[str, int]:
    """Return how many requests the fake server got for each symbol."""
    counts: dict[str, int] = {}
    for request in fake_alphavantage.requests:
        counts[request.params["symbol"]] = counts.get(request.params["symbol"], 0) + 1
    return counts


def serve_until_waiting(start_job, *argv: str, **env: str) -> str:
    """Start the scheduler, let it catch up (or not) and wait for its next time; return its log."""
    scheduler, stderr = start_job("--schedule", YEARLY, *argv, **env)
    wait_for(lambda: "next run at" in stderr.read_text(), "the scheduler to wait")
    scheduler.send_signal(signal.SIGTERM)
    status, _ = finish(scheduler)
    log = stderr.read_text()
    assert status == 0 and "Traceback" not in log, log
    return log


def test_a_scheduler_started_after_its_run_was_stopped_fetches_only_what_that_run_did_not(
        app, job_env, fake_alphavantage, held, start_job):
    """IBM failed and AAPL was stored before the stop: the catch-up asks for MSFT alone."""
    fake_alphavantage.queue_error("invalid_symbol")
    answer = held(AAPL)
    fake_alphavantage.queue_handler(answer)
    scheduler, _ = start_job("--schedule", YEARLY, "--symbols", "IBM,AAPL,MSFT")
    wait_for(lambda: len(fake_alphavantage.requests) == 2, "the catch-up run to ask for AAPL")
    scheduler.send_signal(signal.SIGTERM)
    answer.released.set()
    assert finish(scheduler)[0] == 0
    [stopped] = history(app)[0].values()
    assert stopped.status == "interrupted"

    fake_alphavantage.queue_fixture(IBM)  # answered for MSFT: the client keeps the asked symbol
    log = serve_until_waiting(start_job, "--symbols", "IBM,AAPL,MSFT")
    assert asked(fake_alphavantage) == {"IBM": 1, "AAPL": 1, "MSFT": 1}
    assert "was cut short; fetching what it did not" in log
    runs, symbols = history(app)
    resumed = runs[max(runs)]
    assert len(runs) == 2 and runs[stopped.id].status == "interrupted"
    assert (resumed.trigger, resumed.status) == ("schedule", "ok")
    assert {symbol: row.status for symbol, row in symbols[resumed.id].items()} == {"MSFT": "ok"}
    assert re.fullmatch(r"1 of 1 symbols stored, 10 new rows, 0 updated; catch-up of the "
                        r"scheduled time \S+Z: 2 symbols stored or tried since then not "
                        r"fetched again", resumed.message)
    assert {symbol for symbol, _ in stored(app)} == {"AAPL", "MSFT"}


def test_a_catch_up_refused_the_run_lock_leaves_the_resume_to_the_next_start(
        app, job_env, fake_alphavantage, held, start_job):
    """Stopped after IBM; its catch-up gives up behind a run holding the lock (one by hand,
    say) and is recorded failed; the next start still fetches what the stopped run did not."""
    symbols_option = ("--symbols", "IBM,AAPL,MSFT")
    answer = held(IBM)
    fake_alphavantage.queue_handler(answer)
    scheduler, _ = start_job("--schedule", YEARLY, *symbols_option)
    wait_for(lambda: len(fake_alphavantage.requests) == 1, "the run to ask for IBM")
    scheduler.send_signal(signal.SIGTERM)
    answer.released.set()
    assert finish(scheduler)[0] == 0

    with app.app_context(), database_lock(db.engine, RUN_LOCK, 1):
        log = serve_until_waiting(start_job, *symbols_option, FETCH_LOCK_TIMEOUT="1")
    assert "was cut short; fetching what it did not" in log
    runs, _ = history(app)
    stopped, refused = runs.values()
    assert [(run.trigger, run.status) for run in (stopped, refused)] == [
        ("schedule", "interrupted"), ("schedule", "failed")]
    assert refused.message.startswith("gave up after waiting 1s (FETCH_LOCK_TIMEOUT)")
    assert asked(fake_alphavantage) == {"IBM": 1}

    fake_alphavantage.queue_fixture(AAPL)
    fake_alphavantage.queue_fixture(IBM)  # answered for MSFT: the client keeps the asked symbol
    log = serve_until_waiting(start_job, *symbols_option)
    assert "was cut short; fetching what it did not" in log
    assert asked(fake_alphavantage) == {"IBM": 1, "AAPL": 1, "MSFT": 1}
    runs, symbols = history(app)
    resumed = runs[max(runs)]
    assert (len(runs), resumed.trigger, resumed.status) == (3, "schedule", "ok")
    assert {symbol: row.status for symbol, row in symbols[resumed.id].items()} == {
        "AAPL": "ok", "MSFT": "ok"}
    assert {symbol for symbol, _ in stored(app)} == {"IBM", "AAPL", "MSFT"}


def asked_in_order(fake_alphavantage) -> list[str]:
    return [request.params["symbol"] for request in fake_alphavantage.requests]


def kill_when_asked(start_job, fake_alphavantage, requests: int, *argv: str) -> None:
    """Start the scheduler and SIGKILL it once the fake server got ``requests`` requests.

    The answer to the last one is held, so the run dies while fetching that symbol.
    """
    killed, _ = start_job("--schedule", YEARLY, *argv)
    wait_for(lambda: len(fake_alphavantage.requests) == requests,
             "the run to ask for the symbol it is killed in")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=PROCESS_SECONDS)


def test_a_scheduler_started_after_its_run_was_killed_fetches_the_rest_each_time(
        app, job_env, fake_alphavantage, held, start_job):
    """Killed in AAPL, then its catch-up, which fetches AAPL last, killed in MSFT: each start
    resumes what is missing, the symbols runs were killed in last."""
    symbols_option = ("--symbols", "IBM,AAPL,MSFT")
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_handler(held(AAPL))
    fake_alphavantage.queue_handler(held(IBM))
    for requests in (2, 3):
        kill_when_asked(start_job, fake_alphavantage, requests, *symbols_option)
        runs, _ = history(app)
        assert runs[max(runs)].status == "running"

    fake_alphavantage.queue_fixture(AAPL)
    fake_alphavantage.queue_fixture(IBM)  # answered for MSFT: the client keeps the asked symbol
    log = serve_until_waiting(start_job, *symbols_option)
    assert asked_in_order(fake_alphavantage) == ["IBM", "AAPL", "MSFT", "AAPL", "MSFT"]
    assert "was cut short; fetching what it did not" in log
    runs, symbols = history(app)
    assert [(run.trigger, run.status) for run in runs.values()] == [
        ("schedule", "interrupted"), ("schedule", "interrupted"), ("schedule", "ok")]
    assert [sorted(symbols[run_id]) for run_id in runs] == [["IBM"], [], ["AAPL", "MSFT"]]
    assert {symbol for symbol, _ in stored(app)} == {"IBM", "AAPL", "MSFT"}


def test_a_symbol_two_runs_were_killed_in_waits_for_the_next_scheduled_time(
        app, job_env, fake_alphavantage, held, start_job):
    """The OOM killer on AAPL's answer, say: killed in AAPL, then in MSFT (AAPL put last),
    then in AAPL again (MSFT put last); the next start asks for MSFT alone, not AAPL, so
    restarts neither spend the daily quota on AAPL nor keep MSFT from being fetched."""
    symbols_option = ("--symbols", "IBM,AAPL,MSFT,TSLA")
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_handler(held(AAPL))
    fake_alphavantage.queue_handler(held(IBM))
    fake_alphavantage.queue_fixture(AAPL)
    fake_alphavantage.queue_handler(held(IBM))
    for requests in (2, 3, 5):
        kill_when_asked(start_job, fake_alphavantage, requests, *symbols_option)
    assert asked_in_order(fake_alphavantage) == ["IBM", "AAPL", "MSFT", "TSLA", "AAPL"]

    fake_alphavantage.queue_fixture(IBM)  # answered for MSFT: the client keeps the asked symbol
    log = serve_until_waiting(start_job, *symbols_option)
    assert asked(fake_alphavantage) == {"IBM": 1, "AAPL": 2, "MSFT": 2, "TSLA": 1}
    assert ("AAPL left to the next scheduled time: two runs since were killed while "
            "fetching it") in log
    runs, symbols = history(app)
    assert [(run.trigger, run.status) for run in runs.values()] == [
        ("schedule", "interrupted")] * 3 + [("schedule", "ok")]
    assert [sorted(symbols[run_id]) for run_id in runs] == [["IBM"], [], ["TSLA"], ["MSFT"]]
    resumed = runs[max(runs)]
    assert re.fullmatch(r"1 of 1 symbols stored, 10 new rows, 0 updated; catch-up of the "
                        r"scheduled time \S+Z: 2 symbols stored or tried since then not "
                        r"fetched again; AAPL left to the next scheduled time \(two runs since "
                        r"then were killed while fetching it\)", resumed.message)
    assert {symbol for symbol, _ in stored(app)} == {"IBM", "MSFT", "TSLA"}

    log = serve_until_waiting(start_job, *symbols_option)
    assert "catch-up" not in log and len(fake_alphavantage.requests) == 6


def test_a_scheduler_started_after_its_run_ended_leaves_the_time_done(
        app, job_env, fake_alphavantage, start_job):
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_fixture(AAPL)
    assert "catch-up run: no run since" in serve_until_waiting(start_job)
    log = serve_until_waiting(start_job)
    assert "catch-up" not in log
    assert asked(fake_alphavantage) == {"IBM": 1, "AAPL": 1}
    runs, _ = history(app)
    assert [(run.trigger, run.status) for run in runs.values()] == [("schedule", "ok")]


def test_a_scheduler_started_on_a_database_without_the_schema_migrates_before_reading_history(
        empty_database_url, tmp_path):
    """A fresh database: the catch-up is decided on the history, not on a failed read of it."""
    env = isolated_environment(APP_ENV="testing", DATABASE_URL=empty_database_url,
                               LOG_DIR=str(tmp_path / "log"))
    stderr_path = tmp_path / "scheduler.err"
    with open(stderr_path, "wb") as stderr:
        scheduler = subprocess.Popen(
            [sys.executable, "get_raw_data.py", "--schedule", YEARLY,
             "--from-file", str(ALPHAVANTAGE_FIXTURES / IBM)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(lambda: "next run at" in stderr_path.read_text(), "the scheduler to wait")
        scheduler.send_signal(signal.SIGTERM)
        status = scheduler.wait(timeout=PROCESS_SECONDS)
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait(timeout=PROCESS_SECONDS)
    log = stderr_path.read_text()
    assert status == 0 and "Traceback" not in log, log
    assert "could not read the run history" not in log
    assert "catch-up run: no run since" in log
    application = build_app(empty_database_url, tmp_path / "app-log")
    try:
        runs, _ = history(application)
        assert [(run.trigger, run.status) for run in runs.values()] == [("schedule", "ok")]
        assert len(stored(application)) == 10
    finally:
        dispose_engines(application)


def test_a_catch_up_with_nothing_left_closes_the_dead_run_and_records_nothing(app, caplog):
    """Killed after its last symbol committed: every symbol is stored, only the close is lost."""
    due = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(hours=1)
    with app.app_context():
        dead = FetchRun(started_at=utc_now(), trigger="schedule", status="running")
        db.session.add(dead)
        db.session.flush()
        db.session.add(FetchRunSymbol(run_id=dead.id, symbol="IBM", status="ok",
                                      rows_fetched=10, rows_new=10, rows_updated=0))
        db.session.commit()
        ended = []
        outcome = recorded_run(
            db.session(), db.engine, [Job("IBM", _must_not_fetch, True)],
            RunSettings(window_days=14, lock_timeout=300.0),
            RunHooks(_ignore, _ignore, on_end=lambda: ended.append(True)), trigger="schedule",
            scheduled_for=due, catch_up=True)
    assert outcome is None and ended == [True]
    runs, _ = history(app)
    assert [(run.status, run.message) for run in runs.values()] == [
        ("interrupted", INTERRUPTED_MESSAGE)]


@pytest.mark.parametrize("command", [["refresh-sums"], ["forget-symbols", "--yes", "IBM"]])
def test_a_command_holding_the_run_lock_closes_the_runs_left_running(app, store_prices,
                                                                     make_price, command):
    """No run is in progress while it holds the lock: one marked running died, and a run
    waiting for the command meanwhile would name it as the run it waits for."""
    with app.app_context():
        dead = FetchRun(started_at=utc_now(), trigger="manual", status="running")
        db.session.add(dead)
        db.session.commit()
        dead_id = dead.id
    store_prices([make_price(symbol="IBM")])
    result = app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 0, result.output
    runs, _ = history(app)
    assert [(run.status, run.message) for run in runs.values()] == [
        ("interrupted", INTERRUPTED_MESSAGE)]
    assert runs[dead_id].finished_at is not None


def _must_not_fetch() -> DailySeries:
    raise AssertionError("a symbol stored since the scheduled time was fetched again")


def test_a_scheduled_run_that_waited_past_the_lock_timeout_leaves_the_time_to_the_run_doing_it(
        app, caplog):
    """Another scheduler's run of the same time outlasts FETCH_LOCK_TIMEOUT: no failed run
    of ours stands in the history for a time that run does; one by hand is still refused."""
    due = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    holder = create_engine(app.config["SQLALCHEMY_DATABASE_URI"],
                           **app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    caplog.set_level(logging.INFO, logger="financial.fetch_run")
    with app.app_context(), database_lock(holder, RUN_LOCK, 1):
        other = FetchRun(started_at=utc_now(), trigger="schedule", status="running")
        db.session.add(other)
        db.session.commit()
        other_id, other_started = other.id, iso_utc(other.started_at)
        outcomes = [recorded_run(
            db.session(), db.engine, [], RunSettings(window_days=14, lock_timeout=0.2),
            RunHooks(_ignore, _ignore), trigger=trigger, scheduled_for=scheduled_for)
            for trigger, scheduled_for in (("schedule", due), ("manual", None))]
    holder.dispose()
    assert outcomes[0] is None
    assert (f"skipped: run {other_id} (started {other_started}) is still running the "
            "scheduled time; nothing fetched") in caplog.messages
    runs, _ = history(app)
    assert [run.status for run in runs.values()] == ["running", "failed"]


def _ignore(*_args: object) -> None:
    """A callback with nothing to do."""


@pytest.mark.parametrize("argv, env, message", [
    (["--schedule", "61 18 * * *"], {}, "--schedule: the cron expression '61 18 * * *' cannot"),
    (["--schedule", "30 18 * *"], {}, "--schedule: the cron expression '30 18 * *' must have 5"),
    (["--schedule"], {"FETCH_SCHEDULE": "every day"}, "FETCH_SCHEDULE: the cron expression"),
    (["--schedule"], {"FETCH_TIMEZONE": "Mars/Olympus"}, "FETCH_TIMEZONE: unknown time zone"),
    (["--schedule", "--dry-run"], {}, "--schedule cannot be combined with --dry-run"),
    ([], {"FETCH_LOCK_TIMEOUT": "-1"}, "FETCH_LOCK_TIMEOUT must be 0 or more"),
])
def test_a_bad_schedule_exits_2_with_a_clear_message(
        app, capsys, job_env, monkeypatch, argv, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, out, err = run_job(capsys, job_env, *argv)
    assert (status, out) == (2, "")
    assert err.startswith(f"get_raw_data: {message}") and len(err.splitlines()) == 1
    assert history(app) == ({}, {})


@pytest.mark.redis
def test_every_run_clears_the_cached_history_for_every_worker(
        shared_cache_worker, capsys, job_env, fake_alphavantage):
    worker = shared_cache_worker
    for expected_runs in (1, 2):
        fake_alphavantage.queue_fixture(IBM)
        assert run_job(capsys, job_env, "--symbols", "IBM")[0] == 0
        runs = worker.get("/api/fetch_runs").get_json()["data"]
        assert len(runs) == expected_runs, "a run that changed no row also clears the cache"
        assert worker.get("/api/symbols").get_json()["data"][0]["last_fetched_at"] == (
            runs[0]["started_at"])


@pytest.mark.redis
def test_a_run_that_changes_nothing_keeps_the_cached_prices(
        shared_cache_worker, capsys, job_env, fake_alphavantage, store_prices, make_price):
    """Only the run history's answers are cleared; one that changes rows clears them all."""
    worker = shared_cache_worker

    def listed_symbols() -> set[str]:
        data = worker.get("/api/financial_data?limit=1000").get_json()["data"]
        return {row["symbol"] for row in data}

    def listed_runs() -> int:
        return len(worker.get("/api/fetch_runs").get_json()["data"])

    fake_alphavantage.queue_fixture(IBM)
    assert run_job(capsys, job_env, "--symbols", "IBM")[0] == 0
    assert (listed_symbols(), listed_runs()) == ({"IBM"}, 1)
    # Stored by hand, so only a cleared cache shows it.
    store_prices([make_price(symbol="MSFT", date=datetime.date(2023, 3, 24))])
    fake_alphavantage.queue_fixture(IBM)
    assert run_job(capsys, job_env, "--symbols", "IBM")[0] == 0
    assert listed_runs() == 2
    assert listed_symbols() == {"IBM"}
    fake_alphavantage.queue_fixture(AAPL)
    assert run_job(capsys, job_env, "--symbols", "AAPL")[0] == 0
    assert listed_symbols() == {"AAPL", "IBM", "MSFT"}


@pytest.mark.redis
def test_a_run_refused_at_the_lock_refreshes_the_cached_history(
        shared_cache_worker, capsys, job_env, fake_alphavantage, held, start_job, monkeypatch):
    worker = shared_cache_worker
    answer = held(IBM)
    fake_alphavantage.queue_handler(answer)
    running, _ = start_job("--symbols", "IBM")
    wait_for(lambda: len(fake_alphavantage.requests) == 1, "the first run to ask for IBM")
    assert [run["status"] for run in worker.get("/api/fetch_runs").get_json()["data"]] == [
        "running"]

    monkeypatch.setenv("FETCH_LOCK_TIMEOUT", "0")
    assert run_job(capsys, job_env, "--symbols", "IBM")[0] == 1
    assert [run["status"] for run in worker.get("/api/fetch_runs").get_json()["data"]] == [
        "failed", "running"]
    answer.released.set()
    assert finish(running)[0] == 0


@pytest.mark.redis
def test_each_recorded_symbol_refreshes_the_cached_history_while_the_run_goes_on(
        shared_cache_worker, capsys, job_env, fake_alphavantage, held, start_job):
    worker = shared_cache_worker
    fake_alphavantage.queue_fixture(IBM)
    fake_alphavantage.queue_fixture(AAPL)
    assert run_job(capsys, job_env, "--symbols", "IBM,AAPL")[0] == 0
    # Cached before the next run starts, so only its start's clear shows it running.
    assert len(worker.get("/api/fetch_runs").get_json()["data"]) == 1
    # IBM fails, AAPL comes back unchanged; NOPE's answer keeps the run going meanwhile.
    answers = [held(error="invalid_symbol"), held(AAPL), held(error="invalid_symbol")]
    for answer in answers:
        fake_alphavantage.queue_handler(answer)
    job, stderr = start_job("--symbols", "IBM,AAPL,NOPE")

    def read_while_held(requests: int) -> tuple[dict, dict]:
        """Wait for the run's request number ``requests``; return its run and the symbols."""
        wait_for(lambda: len(fake_alphavantage.requests) == requests,
                 f"the run's request {requests}")
        run = worker.get("/api/fetch_runs").get_json()["data"][0]
        symbols = worker.get("/api/symbols").get_json()["data"]
        return run, {entry["symbol"]: entry for entry in symbols}

    run, symbols = read_while_held(3)
    assert (run["status"], run["symbols"]) == ("running", [])
    assert symbols["IBM"]["last_fetch_status"] == "ok"
    answers[0].released.set()
    run, symbols = read_while_held(4)
    assert [(entry["symbol"], entry["status"]) for entry in run["symbols"]] == [("IBM", "failed")]
    assert (symbols["IBM"]["last_fetch_status"], symbols["IBM"]["last_fetched_at"]) == (
        "failed", run["started_at"])
    answers[1].released.set()
    run, symbols = read_while_held(5)
    assert [(entry["symbol"], entry["status"], entry["rows_new"], entry["rows_updated"])
            for entry in run["symbols"]] == [("AAPL", "ok", 0, 0), ("IBM", "failed", 0, 0)]
    assert symbols["AAPL"]["last_fetched_at"] == run["started_at"]
    answers[2].released.set()
    assert finish(job)[0] == 1, stderr.read_text()
    run = worker.get("/api/fetch_runs").get_json()["data"][0]
    assert (run["status"], len(run["symbols"])) == ("partial", 3)
