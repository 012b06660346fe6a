"""A fetch run killed outright (SIGKILL) leaves whole symbols, exact sums and an exact history.

The job kills itself right after one step of its run (a wrapper around the
function that ends the step), so each kill point is hit every time: the
process dies there as it would to the OOM killer, the database sees only
what it had committed, and the next run takes over.
"""
import datetime
import json
import signal
import subprocess
import sys
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import select

from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.models import FinancialData, MonthlyPriceSums
from financial.runs import INTERRUPTED_MESSAGE
from tests.fake_alphavantage import AAPL, ALPHAVANTAGE_FIXTURES, IBM
from tests.helpers import history, run_job

# Runs get_raw_data.main(argv[4:]) with argv[2] of module argv[1] wrapped: the
# process kills itself with SIGKILL once that function has returned argv[3] times.
KILLING_JOB = """
import functools, importlib, os, signal, sys
import get_raw_data
module, path, calls, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
*owners, name = path.split(".")
owner = importlib.import_module(module)
for part in owners:
    owner = getattr(owner, part)
original, returned = getattr(owner, name), []
@functools.wraps(original)
def dying(*args, **kwargs):
    result = original(*args, **kwargs)
    returned.append(result)
    if len(returned) == calls:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(owner, name, dying)
sys.exit(get_raw_data.main(argv))
"""
CHANGED_DAYS = 5
# (module, function, calls before the kill), the symbols committed then, the killed run's status
KILL_POINTS = {
    "holding the lock, no run row yet": (("financial.runs", "mark_interrupted", 1), [], None),
    "the second symbol's rows written, its sums not": (
        ("financial.ingest", "upsert_encoded", 2), ["IBM"], "running"),
    "the second symbol's history row flushed, not committed": (
        ("financial.runs", "RunRecorder.add", 2), ["IBM"], "running"),
    "the second symbol committed": (
        ("financial.fetch_run", "store_symbol", 2), ["IBM", "AAPL"], "running"),
    "the run closed, before the process ended": (
        ("financial.runs", "RunRecorder.finish", 1), ["IBM", "AAPL"], "ok"),
}


@pytest.fixture
def changed_files(tmp_path) -> list[str]:
    """Write IBM's and AAPL's saved answers, close and high of their newest days raised by 1."""
    paths = []
    for fixture in (IBM, AAPL):
        payload = json.loads((ALPHAVANTAGE_FIXTURES / fixture).read_text())
        days = payload["Time Series (Daily)"]
        for day in sorted(days, reverse=True)[:CHANGED_DAYS]:
            for key in ("2. high", "4. close"):
                days[day][key] = str(Decimal(days[day][key]) + 1)
        path = tmp_path / fixture
        path.write_text(json.dumps(payload))
        paths.append(str(path))
    return paths


def from_files(paths) -> list[str]:
    return ["--full", *(argument for path in paths for argument in ("--from-file", path))]


def prices(app) -> dict[str, dict[datetime.date, tuple]]:
    """Return {symbol: {date: (open, close, volume)}} of the table."""
    with app.app_context():
        stored: dict[str, dict] = defaultdict(dict)
        for row in db.session.scalars(select(FinancialData)):
            stored[row.symbol][row.date] = (row.open_price, row.close_price, row.volume)
        return dict(stored)


def changed_days(before: dict, after: dict, symbol: str) -> int:
    """Return how many stored days of ``symbol`` differ between the two ``prices``."""
    return sum(after[symbol][day] != values for day, values in before[symbol].items())


def assert_sums_match_the_days(app, stored: dict) -> None:
    """The monthly sums are exactly what the stored days add up to."""
    expected: dict[tuple, list] = {}
    for symbol, days in stored.items():
        for day, values in days.items():
            sums = expected.setdefault((symbol, day.year * 100 + day.month), [0, 0, 0, 0])
            for position, value in enumerate((1, *values)):
                sums[position] += value
    with app.app_context():
        found = {(row.symbol, row.month): [row.days, row.open_sum, row.close_sum, row.volume_sum]
                 for row in db.session.scalars(select(MonthlyPriceSums))}
    assert found == expected


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_run_killed_at_any_point_leaves_whole_symbols_and_the_next_run_takes_over(
        app, capsys, job_env, changed_files, point):
    (module, function, calls), committed, killed_status = KILL_POINTS[point]
    status, _, err = run_job(capsys, job_env, *from_files(
        str(ALPHAVANTAGE_FIXTURES / fixture) for fixture in (IBM, AAPL)))
    assert status == 0, err
    before = prices(app)

    killed = subprocess.run(
        [sys.executable, "-c", KILLING_JOB, module, function, str(calls),
         *from_files(changed_files)],
        cwd=PROJECT_ROOT, capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    runs, symbols = history(app)
    first_run = min(runs)
    after_kill = prices(app)
    for symbol in ("IBM", "AAPL"):  # a symbol is stored whole, or not changed at all
        assert changed_days(before, after_kill, symbol) == (
            CHANGED_DAYS if symbol in committed else 0), symbol
    assert_sums_match_the_days(app, after_kill)
    aapl = list(after_kill["AAPL"].values())
    average_close = (sum(close for _, close, _ in aapl) / len(aapl)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP)
    answer = app.test_client().get(
        "/api/statistics?symbol=AAPL&start_date=2022-01-01&end_date=2023-12-31").get_json()
    assert Decimal(str(answer["data"]["average_daily_close_price"])) == average_close
    dead_id = max(runs)
    if killed_status is None:
        assert dead_id == first_run
    else:
        dead = runs[dead_id]
        assert dead.status == killed_status and (dead.finished_at is None) == (
            killed_status == "running")
        assert sorted(symbols[dead.id]) == sorted(committed)
        assert dead.rows_updated == CHANGED_DAYS * len(committed)

    status, _, err = run_job(capsys, job_env, *from_files(changed_files))
    assert status == 0 and "waiting" not in err, err
    runs, symbols = history(app)
    later = runs[max(runs)]
    assert later.status == "ok"
    assert later.rows_updated == CHANGED_DAYS * (2 - len(committed))
    if killed_status is not None:
        dead = runs[dead_id]
        if killed_status == "running":
            assert (dead.status, dead.message) == ("interrupted", INTERRUPTED_MESSAGE)
            assert dead.finished_at == later.started_at
        else:
            assert dead.status == "ok"
    final = prices(app)
    assert [changed_days(before, final, symbol) for symbol in ("IBM", "AAPL")] == [
        CHANGED_DAYS, CHANGED_DAYS]
    assert_sums_match_the_days(app, final)
