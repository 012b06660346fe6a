"""Time pages of GET /api/financial_data's query, shallow and deep, on the benchmark's data set.

Seeds (or reuses) ``benchmark.seed_prices``'s 500 symbols x 20 years of
weekdays in DATABASE_URL, then times ``financial.queries.list_prices`` for a
page of 100 rows in each case: every symbol, one, five and a hundred, with and
without a date range, from the first page to the deepest. Prints the median of
REPETITIONS runs per case as a Markdown table, and each deep page's query plan
with ``--explain``. ``--counts`` times the list's count instead: the plain
``count_prices`` against ``count_listed_prices``, alternately in the same run.
Usage (see README, "Performance")::

    .venv/bin/python scripts/page_timings.py sqlite:////tmp/pages.db
"""
import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event  # noqa: E402 (needs the project root on sys.path)
from sqlalchemy.orm import Session  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from financial.queries import count_listed_prices, count_prices, list_prices  # noqa: E402
from financial.records import DEFAULT_FIELDS  # noqa: E402
from scripts.benchmark import seed_prices, symbol_name  # noqa: E402

REPETITIONS = 7
LIMIT = 100
ONE = (symbol_name(250),)
FIVE = tuple(symbol_name(number) for number in (3, 77, 150, 301, 499))
HUNDRED = tuple(symbol_name(number) for number in range(0, 500, 5))
# Mid-month ends, so the partial months at either end are read from the rows.
DECADE = (datetime.date(2010, 1, 15), datetime.date(2019, 12, 14))
NO_RANGE = (None, None)
CASES = [
    ("all symbols, page 1", None, NO_RANGE, 1),
    ("all symbols, page 200", None, NO_RANGE, 200),
    ("all symbols, page 20,000", None, NO_RANGE, 20_000),
    ("all symbols, 2010-01-15..2019-12-14, page 12,000", None, DECADE, 12_000),
    ("1 symbol, page 52", ONE, NO_RANGE, 52),
    ("5 symbols, page 1", FIVE, NO_RANGE, 1),
    ("5 symbols, page 250", FIVE, NO_RANGE, 250),
    ("5 symbols, 2010-01-15..2019-12-14, page 120", FIVE, DECADE, 120),
    ("100 symbols, page 1", HUNDRED, NO_RANGE, 1),
    ("100 symbols, page 5,000", HUNDRED, NO_RANGE, 5_000),
    ("100 symbols, 2010-01-15..2019-12-14, page 2,500", HUNDRED, DECADE, 2_500),
]
TWENTY = tuple(symbol_name(number) for number in range(0, 500, 25))
COUNT_CASES = [
    ("all symbols", None, NO_RANGE),
    ("all symbols, 2010-01-15..2019-12-14", None, DECADE),
    ("all symbols, 2018-06-15..2019-12-14", None, (datetime.date(2018, 6, 15), DECADE[1])),
    ("all symbols, 2019-06-15..2019-12-14", None, (datetime.date(2019, 6, 15), DECADE[1])),
    ("all symbols, 2015-03-03..2015-03-20", None,
     (datetime.date(2015, 3, 3), datetime.date(2015, 3, 20))),
    ("1 symbol", ONE, NO_RANGE),
    ("1 symbol, 2010-01-15..2019-12-14", ONE, DECADE),
    ("5 symbols, 2010-01-15..2019-12-14", FIVE, DECADE),
    ("20 symbols, 2010-01-15..2019-12-14", TWENTY, DECADE),
    ("100 symbols", HUNDRED, NO_RANGE),
    ("100 symbols, 2010-01-15..2019-12-14", HUNDRED, DECADE),
    ("100 symbols, 2019-06-15..2019-12-14", HUNDRED, (datetime.date(2019, 6, 15), DECADE[1])),
]


def time_page(session: Session, symbols, dates, page: int) -> float:
    """Return the median seconds list_prices takes for the page."""
    times = []
    for _ in range(REPETITIONS):
        started = time.perf_counter()
        rows = list_prices(session, symbols=symbols, start_date=dates[0], end_date=dates[1],
                           fields=DEFAULT_FIELDS, limit=LIMIT, offset=(page - 1) * LIMIT)
        times.append(time.perf_counter() - started)
        session.rollback()
        if len(rows) != LIMIT:
            raise SystemExit(f"page {page} holds {len(rows)} rows, not {LIMIT}")
    return statistics.median(times)


def time_counts(session: Session, symbols, dates) -> tuple[float, float]:
    """Return the median seconds of count_prices and of count_listed_prices, run alternately."""
    plain: list[float] = []
    listed: list[float] = []
    for _ in range(REPETITIONS):
        expected = timed_count(session, count_prices, symbols, dates, plain)
        counted = timed_count(session, count_listed_prices, symbols, dates, listed)
        if counted != expected:
            raise SystemExit(f"count_listed_prices counts {counted} rows, not {expected}")
    return statistics.median(plain), statistics.median(listed)


def timed_count(session: Session, count, symbols, dates, times: list[float]) -> int:
    """Return what ``count`` counts, adding the seconds it took to ``times``."""
    started = time.perf_counter()
    rows = count(session, symbols=symbols, start_date=dates[0], end_date=dates[1])
    times.append(time.perf_counter() - started)
    session.rollback()
    return rows


def explain(session: Session, symbols, dates, page: int) -> None:
    """Print the plan of every statement the page runs."""
    statements = []

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    list_prices(session, symbols=symbols, start_date=dates[0], end_date=dates[1],
                fields=DEFAULT_FIELDS, limit=LIMIT, offset=(page - 1) * LIMIT)
    event.remove(db.engine, "before_cursor_execute", record)
    prefix = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
    for statement, parameters in statements:
        for row in session.connection().exec_driver_sql(prefix + statement, parameters):
            print("    ", tuple(row))
    session.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--explain", action="store_true", help="print each deep page's plan")
    parser.add_argument("--counts", action="store_true",
                        help="time the list's count, before and after the monthly sums")
    args = parser.parse_args()
    seed_prices(args.database_url, 500, 20)
    # Generous timeouts: the point is to see how long a page takes, not to cut it off.
    app = create_app("development", overrides={
        "SQLALCHEMY_DATABASE_URI": args.database_url, "LOG_LEVEL": "WARNING",
        "DATABASE_TIMEOUT": 120, "DATABASE_READ_TIMEOUT": 120})
    with app.app_context():
        session = db.session()
        if args.counts:
            print("| count of | count_prices | count_listed_prices |\n| --- | ---: | ---: |")
            for name, symbols, dates in COUNT_CASES:
                plain, listed = time_counts(session, symbols, dates)
                print(f"| {name} | {plain * 1000:.1f} ms | {listed * 1000:.1f} ms |", flush=True)
            db.engine.dispose()
            return
        print("| page of 100 rows | time |\n| --- | ---: |")
        for name, symbols, dates, page in CASES:
            seconds = time_page(session, symbols, dates, page)
            print(f"| {name} | {seconds * 1000:.1f} ms |", flush=True)
            if args.explain and page > 1:
                explain(session, symbols, dates, page)
        db.engine.dispose()


if __name__ == "__main__":
    main()
