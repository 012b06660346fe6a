"""GET /metrics in one process: the series the contract lists, after known requests."""
import datetime
import logging
import math
import re
import struct
import subprocess
import sys
import time

import pytest
from flask_migrate import upgrade
from prometheus_client.mmap_dict import MmapedDict

import get_raw_data
from app import metrics
from app.extensions import db
from app.metrics import METRICS_FOLDER_GONE
from conf.settings import PROJECT_ROOT
from financial.models import FetchRun
from tests.fake_alphavantage import ALPHAVANTAGE_FIXTURES
from tests.helpers import build_app, isolated_environment, scrape

STATS_URL = "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-01-31"


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def increase(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_requests_latency_and_cache_lookups_are_counted(app, store_prices, make_price):
    store_prices([make_price(symbol="IBM", date=datetime.date(2023, 1, 3))])
    client = app.test_client()
    before = scrape(client)
    for _ in range(3):
        client.get("/api/financial_data?symbol=IBM")
    client.get(STATS_URL)
    client.get(STATS_URL)
    # Spelled as normalized, missed before dispatch: its value is not looked up again.
    client.get(STATS_URL.replace("2023-01-31", "2023-01-30"))
    client.get("/api/financial_data?limit=0")
    client.get("/api/nothing")
    client.delete("/api/health")
    after = scrape(client)

    requests = "financial_http_requests_total"
    assert increase(before, after, requests, endpoint="/api/financial_data", method="GET",
                    status="200") == 3
    assert increase(before, after, requests, endpoint="/api/statistics", method="GET",
                    status="200") == 3
    assert increase(before, after, requests, endpoint="/api/financial_data", method="GET",
                    status="400") == 1
    assert increase(before, after, requests, endpoint="none", method="GET", status="404") == 1
    assert increase(before, after, requests, endpoint="none", method="DELETE", status="405") == 1
    assert increase(before, after, requests, endpoint="/metrics", method="GET",
                    status="200") == 0, "scrapes are not counted"
    latency = "financial_http_request_duration_seconds"
    assert increase(before, after, f"{latency}_count", endpoint="/api/financial_data") == 4
    assert increase(before, after, f"{latency}_bucket", endpoint="/api/financial_data",
                    le="+Inf") == 4
    assert increase(before, after, f"{latency}_sum", endpoint="/api/financial_data") > 0

    lookups = "financial_cache_lookups_total"
    assert increase(before, after, lookups, kind="price_page", result="miss") == 1
    assert increase(before, after, lookups, kind="price_page", result="hit") == 2
    assert increase(before, after, lookups, kind="count", result="miss") == 1
    assert increase(before, after, lookups, kind="statistics", result="miss") == 2
    assert increase(before, after, lookups, kind="statistics", result="hit") == 1


def test_a_streamed_exports_latency_lasts_until_its_body_is_sent(app, store_prices, make_price,
                                                                 monkeypatch):
    store_prices([make_price(symbol="IBM", date=datetime.date(2023, 1, 3))])
    client = app.test_client()
    before = scrape(client)
    clock = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    response = client.get("/api/financial_data/export?symbol=IBM", buffered=False)
    assert response.status_code == 200 and response.is_streamed
    clock[0] += 30  # the client reads the rows for half a minute
    rows = response.get_data(as_text=True).splitlines()
    response.close()
    monkeypatch.undo()
    after = scrape(client)

    assert rows[0].startswith("symbol,date,") and len(rows) == 2
    latency = "financial_http_request_duration_seconds"
    export = "/api/financial_data/export"
    assert increase(before, after, f"{latency}_bucket", endpoint=export, le="10.0") == 0
    assert increase(before, after, f"{latency}_bucket", endpoint=export, le="+Inf") == 1
    assert increase(before, after, f"{latency}_sum", endpoint=export) == 30
    assert increase(before, after, "financial_http_requests_total", endpoint=export,
                    method="GET", status="200") == 1


def test_a_files_latency_is_observed_once_each_request_at_its_headers(app):
    """The server closes a file's wrapper itself, running none of the response's callbacks."""
    client = app.test_client()
    path = "/static/dashboard/chart.js"
    with client.get(path) as first:
        tag = first.headers["ETag"]
    before = scrape(client)
    with client.get(path, buffered=False) as response:
        assert response.status_code == 200
        body = response.get_data()
    with client.head(path) as head, client.get(path, headers={"If-None-Match": tag}) as (
            not_modified):
        pass
    after = scrape(client)

    assert body and head.status_code == 200 and not_modified.status_code == 304
    static = "/static/<path:filename>"
    assert increase(before, after, "financial_http_request_duration_seconds_count",
                    endpoint=static) == 3
    assert sum(increase(before, after, "financial_http_requests_total", endpoint=static,
                        method=method, status=status)
               for method, status in (("GET", "200"), ("HEAD", "200"), ("GET", "304"))) == 3


def test_the_newest_stored_day_of_each_symbol_is_read_at_scrape_time(app, store_prices,
                                                                     make_price):
    client = app.test_client()
    assert not [key for key in scrape(client) if key[0] == "financial_newest_stored_date_seconds"]
    store_prices([make_price(symbol="IBM", date=datetime.date(2023, 1, 3)),
                  make_price(symbol="IBM", date=datetime.date(2023, 3, 24)),
                  make_price(symbol="BRK.B", date=datetime.date(2024, 2, 29))])
    samples = scrape(client)
    newest = {dict(labels)["symbol"]: sample for (name, labels), sample in samples.items()
              if name == "financial_newest_stored_date_seconds"}
    assert newest == {"IBM": 1679616000.0, "BRK.B": 1709164800.0}  # midnight UTC of each day
    assert value(samples, "financial_database_up") == 1


def test_the_newest_day_series_stop_at_the_first_symbols_by_name(
        app, store_prices, make_price, monkeypatch):
    monkeypatch.setattr(metrics, "MAX_SYMBOL_SERIES", 2)
    store_prices([make_price(symbol=symbol, date=datetime.date(2023, 3, 24))
                  for symbol in ("MSFT", "AAPL", "IBM")])
    names = [dict(labels)["symbol"] for name, labels in scrape(app.test_client())
             if name == "financial_newest_stored_date_seconds"]
    assert sorted(names) == ["AAPL", "IBM"]


def last_run_series(samples: dict) -> dict:
    return {(name, labels): sample for (name, labels), sample in samples.items()
            if name.startswith("financial_last_fetch_run_")}


def test_the_last_fetch_run_is_read_at_scrape_time(app, monkeypatch, tmp_path):
    client = app.test_client()
    assert last_run_series(scrape(client)) == {}, "no series before the first run"

    with app.app_context():
        db.session.add(FetchRun(started_at=datetime.datetime(2023, 3, 24, 22, 30, 0),
                                trigger="schedule", status="running"))
        db.session.commit()
    running = last_run_series(scrape(client))
    assert running[("financial_last_fetch_run_status", (("status", "running"),))] == 1
    assert running[("financial_last_fetch_run_status", (("status", "ok"),))] == 0
    assert running[("financial_last_fetch_run_started_seconds", ())] == 1679697000
    assert ("financial_last_fetch_run_finished_seconds", ()) not in running

    for name, setting in isolated_environment(
            APP_ENV="testing", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
            LOG_DIR=str(tmp_path / "joblog")).items():
        monkeypatch.setenv(name, setting)
    saved = ALPHAVANTAGE_FIXTURES / "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"
    assert get_raw_data.main(["--from-file", str(saved)]) == 0
    with app.app_context():
        run = db.session.query(FetchRun).order_by(FetchRun.id.desc()).first()
        started, finished = run.started_at, run.finished_at
    done = last_run_series(scrape(client))
    statuses = {dict(labels)["status"]: sample for (name, labels), sample in done.items()
                if name == "financial_last_fetch_run_status"}
    assert statuses == {"running": 0, "ok": 1, "partial": 0, "failed": 0, "interrupted": 0}
    utc = datetime.timezone.utc
    assert done[("financial_last_fetch_run_started_seconds", ())] == (
        started.replace(tzinfo=utc).timestamp())
    assert done[("financial_last_fetch_run_finished_seconds", ())] == (
        finished.replace(tzinfo=utc).timestamp())


def test_database_errors_are_counted_and_the_scrape_still_answers(app, tmp_path):
    # A folder where the database file should be: SQLite cannot open it.
    (tmp_path / "broken.db").mkdir()
    broken = build_app(f"sqlite:///{tmp_path / 'broken.db'}", tmp_path / "log")
    client = broken.test_client()
    before = scrape(client)
    assert client.get("/api/financial_data?symbol=ZZZ").status_code == 503
    assert client.get("/api/health").status_code == 503
    after = scrape(client)
    # The two requests and the first scrape's own query.
    assert increase(before, after, "financial_database_errors_total") == 3
    assert value(after, "financial_database_up") == 0


def test_an_outage_is_logged_once_per_interval_not_once_per_scrape(tmp_path, caplog):
    (tmp_path / "broken.db").mkdir()
    client = build_app(f"sqlite:///{tmp_path / 'broken.db'}", tmp_path / "log").test_client()
    with caplog.at_level(logging.WARNING, logger="app.metrics"):
        for _ in range(3):
            assert value(scrape(client), "financial_database_up") == 0
    lines = [record.getMessage() for record in caplog.records if record.name == "app.metrics"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("metrics: database unavailable: OperationalError")


def test_a_scrape_that_reads_the_database_again_says_so_once(
        empty_database_url, tmp_path, caplog):
    application = build_app(empty_database_url, tmp_path / "log")
    client = application.test_client()
    with caplog.at_level(logging.WARNING, logger="app.metrics"):
        assert [value(scrape(client), "financial_database_up") for _ in range(2)] == [0, 0]
        with application.app_context():
            upgrade()
        assert [value(scrape(client), "financial_database_up") for _ in range(2)] == [1, 1]
    lines = [record.getMessage() for record in caplog.records if record.name == "app.metrics"]
    assert len(lines) == 2, lines
    assert re.fullmatch(r"metrics: database is back after \d+s; scrapes without the stored "
                        r"data since the last 'metrics: database unavailable' line: 1",
                        lines[1]), lines[1]
    with application.app_context():
        db.engine.dispose()


def test_a_database_without_its_schema_is_down_and_the_scrape_still_answers(
        empty_database_url, tmp_path):
    client = build_app(empty_database_url, tmp_path / "log").test_client()
    assert client.get("/api/health").status_code == 503
    before = scrape(client)
    assert value(before, "financial_database_up") == 0
    after = scrape(client)
    assert increase(before, after, "financial_database_errors_total") == 1, "the first scrape"


# gunicorn's master imports the app's code (its create_app() imports the serving
# modules, metrics among them), its metrics folder is deleted (a cleaner of
# temporary files), then a worker starts: prometheus_client's multiprocess mode
# with no folder to keep that worker's counts in.
WORKER_WITHOUT_ITS_FOLDER = """
import os, shutil, sys, traceback
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[2]
os.makedirs(sys.argv[2])
import app.serving
from tests.helpers import build_app
shutil.rmtree(sys.argv[2])
worker = os.fork()
if worker:
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(worker, 0)[1]))
try:
    client = build_app(sys.argv[1], sys.argv[3]).test_client()
    for path in ("/api/health", "/api/financial_data?symbol=IBM", "/api/nope", "/metrics"):
        response = client.get(path)
        print(path, response.status_code, response.get_data(as_text=True).strip(), flush=True)
except BaseException:
    traceback.print_exc()
    os._exit(1)
os._exit(0)
"""


def test_the_format_follows_accept_and_says_it_varies_by_it(app):
    client = app.test_client()
    plain = client.get("/metrics")
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert plain.mimetype == "text/plain"
    assert openmetrics.mimetype == "application/openmetrics-text"
    assert openmetrics.get_data(as_text=True).endswith("# EOF\n")
    for answer in (plain, openmetrics):
        assert "Accept" in answer.vary, "a cache must not give one scraper the other's format"


def test_a_worker_without_its_metrics_folder_answers_and_says_so_once(database_url, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", WORKER_WITHOUT_ITS_FOLDER, database_url,
         str(tmp_path / "deleted"), str(tmp_path / "log")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answers = result.stdout.splitlines()
    assert [line.split(" ", 2)[1] for line in answers] == ["200", "200", "404", "503"], answers
    assert answers[3] == f"/metrics 503 {METRICS_FOLDER_GONE}"
    lost = [line for line in result.stderr.splitlines() if "metrics: cannot count" in line]
    assert len(lost) == 1 and "No such file or directory" in lost[0], result.stderr
    assert "Traceback" not in result.stderr


def counts_file(path, entry: bytes) -> str:
    """Write a worker's counts file holding one ``entry`` (length, key, value); return its name."""
    used = 8 + len(entry) + 16
    path.write_bytes(struct.pack("ii", used, 0) + entry + bytes(16) + bytes(1 << 16))
    return str(path)


# prometheus_client leaves the damaged file open when it gives up on it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("entry", [
    struct.pack("i", 1 << 20),  # a key said to run past the file's used part: RuntimeError
    struct.pack("i", 2) + b"\xff\xfe  ",  # a key that is not UTF-8: UnicodeDecodeError
], ids=["overlong key", "key not utf-8"])
def test_a_corrupt_counts_file_loses_the_count_and_says_so(tmp_path, caplog, monkeypatch, entry):
    """A worker reopening a damaged file (a reused pid, a torn write) loses the count, said."""
    name = counts_file(tmp_path / "counter_1.db", entry)
    monkeypatch.setattr(metrics._COUNTS_LOST, "_clock", lambda: math.inf)  # past the last line
    with caplog.at_level(logging.ERROR, logger="app.metrics"):
        metrics._count(lambda: MmapedDict(name))
    assert "metrics: cannot count" in caplog.text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_counts_file_cut_short_loses_the_count_and_says_so(tmp_path, caplog, monkeypatch):
    """A file shorter than its own header (a torn write): struct.error, not a failed request."""
    path = tmp_path / "counter_1.db"
    path.write_bytes(struct.pack("ii", 1 << 16, 0)[:6])
    monkeypatch.setattr(metrics._COUNTS_LOST, "_clock", lambda: math.inf)  # past the last line
    with caplog.at_level(logging.ERROR, logger="app.metrics"):
        metrics._count(lambda: MmapedDict(str(path)))
    assert "metrics: cannot count: error: unpack_from requires" in caplog.text


def test_a_mistake_in_counting_is_raised_not_taken_for_a_lost_count(caplog):
    with pytest.raises(ValueError, match="label"):
        metrics._count(lambda: metrics.REQUESTS.labels("one of three labels"))
    assert "metrics: cannot count" not in caplog.text
