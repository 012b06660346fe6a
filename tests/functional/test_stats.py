"""compute_statistics called directly on every database backend."""
import datetime
import random
import threading
from pathlib import Path
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from sqlalchemy import create_engine, event, insert, select, text, update
from sqlalchemy.engine import make_url

from app.extensions import db
from financial.errors import NoDataError
from financial.fetch_run import RUN_LOCK
from financial.models import FinancialData, MonthlyPriceSums
from financial.monthly_sums import refresh_monthly_sums
from financial.stats import _RANGE_SUMS, PriceStatistics, _split_range, compute_statistics
from lib.locks import database_lock
from tests.helpers import build_app, dispose_engines, insert_prices, sqlite_url

D = datetime.date


def store(db_session, symbol, rows):
    insert_prices(db_session, [
        {"symbol": symbol, "date": day, "open_price": Decimal(open_price),
         "close_price": Decimal(close_price), "volume": volume}
        for day, open_price, close_price, volume in rows])
    db_session.flush()


def test_averages_only_the_symbol_in_the_inclusive_range(db_session):
    store(db_session, "IBM", [(D(2023, 1, 2), "10.0000", "20.0000", 100),
                              (D(2023, 1, 3), "20.0000", "30.0000", 200),
                              (D(2023, 1, 4), "30.0000", "40.0000", 301),
                              (D(2023, 1, 5), "999.0000", "999.0000", 99)])
    store(db_session, "AAPL", [(D(2023, 1, 3), "500.0000", "500.0000", 5)])
    stats = compute_statistics(db_session, "IBM", D(2023, 1, 2), D(2023, 1, 4))
    assert stats == PriceStatistics(Decimal("20.00"), Decimal("30.00"), 200)


def test_whole_months_of_several_symbols_keep_their_own_sums(db_session):
    # Whole months come from monthly_price_sums, refreshed here for every symbol at once.
    store(db_session, "IBM", [(D(2023, 1, 2), "10.0000", "20.0000", 100),
                              (D(2023, 1, 3), "20.0000", "30.0000", 300)])
    store(db_session, "AAPL", [(D(2023, 1, 3), "500.0000", "600.0000", 5)])
    assert compute_statistics(db_session, "IBM", D(2023, 1, 1), D(2023, 1, 31)) == (
        PriceStatistics(Decimal("15.00"), Decimal("25.00"), 200))
    assert compute_statistics(db_session, "AAPL", D(2022, 12, 1), D(2023, 2, 28)) == (
        PriceStatistics(Decimal("500.00"), Decimal("600.00"), 5))


def test_rounds_the_exact_mean_half_away_from_zero(db_session):
    # open 0.0025 -> 0.00; close exactly 2.125 -> 2.13; volume exactly 2.5 -> 3.
    store(db_session, "IBM", [(D(2023, 1, 2), "0.0050", "2.1240", 2),
                              (D(2023, 1, 3), "0.0000", "2.1260", 3)])
    stats = compute_statistics(db_session, "IBM", D(2023, 1, 1), D(2023, 1, 31))
    assert stats == PriceStatistics(Decimal("0.00"), Decimal("2.13"), 3)


def test_sums_of_large_prices_stay_exact(db_session):
    days = [D(2023, 1, 2) + datetime.timedelta(days=n) for n in range(3)]
    store(db_session, "BIG", [(day, "999999999.9999", "0.0001", 10**13) for day in days])
    stats = compute_statistics(db_session, "BIG", days[0], days[-1])
    assert stats == PriceStatistics(Decimal("1000000000.00"), Decimal("0.00"), 10**13)


@pytest.mark.parametrize("symbol, start, end", [
    ("IBM", D(2023, 2, 1), D(2023, 2, 28)),
    ("MSFT", D(2023, 1, 1), D(2023, 1, 31)),
])
def test_no_stored_day_raises_no_data_naming_symbol_and_range(db_session, symbol, start, end):
    store(db_session, "IBM", [(D(2023, 1, 2), "1.0000", "1.0000", 1)])
    with pytest.raises(NoDataError) as raised:
        compute_statistics(db_session, symbol, start, end)
    assert raised.value.message == (
        f"no data for symbol {symbol} between {start.isoformat()} and {end.isoformat()}")


def exact_statistics(rows, start, end) -> PriceStatistics:
    """The averages computed the plain way, day by day, for comparison."""
    days = [row for row in rows if start <= row[0] <= end]
    count = len(days)
    with localcontext() as context:
        context.prec = 60

        def mean(values, places):
            return (sum(values, Decimal(0)) / count).quantize(places, rounding=ROUND_HALF_UP)

        return PriceStatistics(mean([Decimal(row[1]) for row in days], Decimal("0.01")),
                               mean([Decimal(row[2]) for row in days], Decimal("0.01")),
                               int(mean([Decimal(row[3]) for row in days], Decimal("1"))))


def test_any_range_adds_whole_months_and_edge_days_exactly(db_session):
    rng = random.Random(14)
    rows, day = [], D(2022, 11, 25)
    while day <= D(2023, 4, 5):
        if day.weekday() < 5:
            rows.append((day, f"{rng.randint(1, 999999) / 10000:.4f}",
                         f"{rng.randint(1, 999999) / 10000:.4f}", rng.randint(0, 10**9)))
        day += datetime.timedelta(days=1)
    store(db_session, "IBM", rows)
    edges = [D(2022, 11, 25), D(2022, 11, 30), D(2022, 12, 1), D(2022, 12, 31), D(2023, 1, 1),
             D(2023, 1, 2), D(2023, 1, 31), D(2023, 2, 1), D(2023, 2, 28), D(2023, 3, 1),
             D(2023, 3, 15), D(2023, 3, 31), D(2023, 4, 5)]
    for start in edges:
        for end in edges:
            if start <= end and any(start <= row[0] <= end for row in rows):
                assert compute_statistics(db_session, "IBM", start, end) == exact_statistics(
                    rows, start, end), (start, end)


def test_the_statement_returns_the_whole_months_and_the_edge_days_as_two_rows(db_session):
    """However many whole months the range holds, they come back added up in one row."""
    store(db_session, "IBM", [(D(2022, 12, 15), "1.0000", "2.0000", 1),
                              (D(2023, 1, 10), "10.0000", "20.0000", 100),
                              (D(2023, 2, 10), "20.0000", "30.0000", 200),
                              (D(2023, 3, 10), "30.0000", "40.0000", 300),
                              (D(2023, 4, 3), "3.0000", "4.0000", 3)])
    rows = db_session.connection().execute(
        _RANGE_SUMS, {"symbol": "IBM", **_split_range(D(2022, 12, 15), D(2023, 4, 15))}).all()
    assert sorted(tuple(row) for row in rows) == [(2, Decimal("4"), Decimal("6"), 4),
                                                  (3, Decimal("60"), Decimal("90"), 600)]


def month_sums(db_session) -> list[tuple]:
    return [tuple(row) for row in db_session.execute(
        select(MonthlyPriceSums.symbol, MonthlyPriceSums.month, MonthlyPriceSums.days,
               MonthlyPriceSums.volume_sum)
        .order_by(MonthlyPriceSums.symbol, MonthlyPriceSums.month))]


def test_refreshing_some_months_of_a_symbol_runs_no_orm_statement(db_session):
    """The fetch job refreshes each symbol's months: the ORM's execution cost more than the SQL."""
    store(db_session, "IBM", [(D(2023, 1, 2), "1.0000", "1.0000", 1),
                              (D(2023, 3, 1), "1.0000", "1.0000", 3)])
    store(db_session, "AAPL", [(D(2023, 2, 1), "1.0000", "1.0000", 5)])
    db_session.execute(insert(FinancialData), [
        {"symbol": symbol, "date": day, "open_price": Decimal(1), "close_price": Decimal(1),
         "volume": 10} for symbol in ("IBM", "AAPL") for day in (D(2023, 1, 3), D(2023, 2, 2))])
    orm_statements: list = []
    record = orm_statements.append
    event.listen(db_session(), "do_orm_execute", record)
    try:
        refresh_monthly_sums(db_session, "IBM", D(2023, 2, 2), D(2023, 2, 2))
    finally:
        event.remove(db_session(), "do_orm_execute", record)
    assert orm_statements == []
    # February of IBM only: January's new day and AAPL's wait for their own refresh.
    assert month_sums(db_session) == [("AAPL", 202302, 1, 5), ("IBM", 202301, 1, 1),
                                      ("IBM", 202302, 1, 10), ("IBM", 202303, 1, 3)]


@pytest.mark.parametrize("bounds, refreshed", [
    ({"first_day": D(2023, 2, 15)}, [("IBM", 202301, 1, 1), ("IBM", 202302, 2, 12),
                                     ("IBM", 202303, 2, 13)]),
    ({"last_day": D(2023, 2, 15)}, [("IBM", 202301, 2, 11), ("IBM", 202302, 2, 12),
                                    ("IBM", 202303, 1, 3)]),
])
def test_refreshing_from_or_up_to_a_day_takes_every_month_on_the_open_side(
        db_session, bounds, refreshed):
    store(db_session, "IBM", [(D(2023, 1, 2), "1.0000", "1.0000", 1),
                              (D(2023, 2, 1), "1.0000", "1.0000", 2),
                              (D(2023, 3, 1), "1.0000", "1.0000", 3)])
    db_session.execute(insert(FinancialData), [
        {"symbol": "IBM", "date": day, "open_price": Decimal(1), "close_price": Decimal(1),
         "volume": 10} for day in (D(2023, 1, 3), D(2023, 2, 2), D(2023, 3, 2))])
    refresh_monthly_sums(db_session, "IBM", **bounds)
    assert month_sums(db_session) == refreshed


def test_refreshing_counts_the_days_added_to_the_session_and_not_yet_flushed(db_session):
    db_session.add(FinancialData(symbol="IBM", date=D(2023, 1, 2), open_price=Decimal(1),
                                 close_price=Decimal(2), volume=7))
    refresh_monthly_sums(db_session, "IBM", D(2023, 1, 2), D(2023, 1, 2))
    assert month_sums(db_session) == [("IBM", 202301, 1, 7)]


@pytest.mark.mysql
def test_statistics_need_no_temporary_table_on_mysql(mysql_app):
    """The whole months and the edge days are added up without a derived table to materialize."""
    with mysql_app.app_context():
        store(db.session, "IBM", [(D(2023, 1, 31), "10.0000", "20.0000", 100),
                                  (D(2023, 2, 1), "30.0000", "40.0000", 300)])
        created = "SHOW SESSION STATUS LIKE 'Created_tmp_tables'"
        before = int(db.session.execute(text(created)).one()[1])
        stats = compute_statistics(db.session, "IBM", D(2023, 1, 31), D(2023, 2, 28))
        assert int(db.session.execute(text(created)).one()[1]) == before
        assert stats == PriceStatistics(Decimal("20.00"), Decimal("30.00"), 200)
        db.session.rollback()


def open_average(session) -> Decimal:
    return compute_statistics(session, "IBM", D(2023, 1, 1),
                              D(2023, 1, 31)).average_daily_open_price


def change_an_open_price_by_hand(app) -> None:
    """Store a day opening at 10, then make it 30 behind the sums' back."""
    with app.app_context():
        store(db.session, "IBM", [(D(2023, 1, 2), "10.0000", "20.0000", 100)])
        db.session.commit()
        db.session.execute(update(FinancialData).values(open_price=Decimal("30")))
        db.session.commit()
        assert open_average(db.session) == Decimal("10.00"), "the sums still hold the old day"


def test_the_refresh_command_repairs_sums_after_a_change_by_hand(app):
    change_an_open_price_by_hand(app)
    result = app.test_cli_runner().invoke(args=["refresh-sums"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "monthly sums recomputed\n"
    assert "out of this command's reach" in result.stderr, "SimpleCache: the API is not reached"
    with app.app_context():
        assert open_average(db.session) == Decimal("30.00")


# SQLite's answers take no timeout.
@pytest.mark.parametrize("database_url", [pytest.param("mysql", marks=pytest.mark.mysql)],
                         indirect=True)
def test_the_refresh_command_may_take_longer_than_the_apis_read_timeout(app):
    """It reads every stored day, which takes long on a big table; the API's answers time out."""
    change_an_open_price_by_hand(app)
    with app.app_context():
        url = db.engine.url.render_as_string(hide_password=False)
    assert app.config["DATABASE_READ_TIMEOUT"] < 3
    holder = create_engine(url)
    try:
        with holder.connect() as connection:
            connection.execute(text("LOCK TABLES financial_data WRITE"))
            release = threading.Timer(3.0, connection.execute, [text("UNLOCK TABLES")])
            release.start()
            try:
                result = app.test_cli_runner().invoke(args=["refresh-sums"])
            finally:
                release.join()
    finally:
        holder.dispose()
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert open_average(db.session) == Decimal("30.00")


def test_the_refresh_command_says_in_one_line_that_its_lock_file_cannot_be_opened(tmp_path):
    database = sqlite_url(tmp_path)
    blocked = Path(f"{make_url(database).database}.{RUN_LOCK}-lock")
    blocked.mkdir()  # open() refuses a folder, even to root, as a read-only disk refuses a file
    application = build_app(database, tmp_path / "log")
    result = application.test_cli_runner().invoke(args=["refresh-sums"])
    dispose_engines(application)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (f"Error: the lock file {blocked} cannot be opened (Is a directory); "
                             "nothing was changed\n")


def test_the_refresh_command_waits_for_a_fetch_run_and_gives_up_without_a_change(app):
    change_an_open_price_by_hand(app)
    with app.app_context():
        url = db.engine.url.render_as_string(hide_password=False)
    app.config["FETCH_LOCK_TIMEOUT"] = 0
    fetch_run = create_engine(url)
    try:
        with database_lock(fetch_run, RUN_LOCK, 1):
            result = app.test_cli_runner().invoke(args=["refresh-sums"])
    finally:
        fetch_run.dispose()
    assert result.exit_code == 1, result.output
    assert "waiting up to 0s for the fetch run in progress" in result.output
    assert "still held the run lock after 0s (FETCH_LOCK_TIMEOUT); nothing was changed" in (
        result.output)
    with app.app_context():
        assert open_average(db.session) == Decimal("10.00"), "the sums were left as they were"
