"""store_prices, store_symbol and their upsert called directly on every database backend."""
import dataclasses
import datetime
import re
from decimal import Decimal

import pytest
from sqlalchemy import Date, bindparam, insert, select, text
from sqlalchemy.dialects import oracle
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

import financial.ingest
from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.ingest import (
    ROW_COLUMNS, VALUE_COLUMNS, StoreResult, _row, _stored_range, store_prices, store_symbol,
)
from financial.models import FinancialData, MonthlyPriceSums
from financial.monthly_sums import refresh_monthly_sums
from lib.avantage_api import DailyBar
from lib.storage import (
    UPSERT_CHUNK_SIZE, RowCodec, _stored_texts, _upsert_sql, row_codec, rows_stored_unchanged,
    upsert_encoded,
)

D = datetime.date
FIRST = D(2023, 1, 2)


def frame_of(days: int, open_price: str = "10.0000", adjusted: bool = False) -> list[DailyBar]:
    """A window as recent_days makes it: one bar a day, oldest first.

    ``adjusted`` fills the TIME_SERIES_DAILY_ADJUSTED-only values, else they are None.
    """
    extra = (Decimal("11.1234"), Decimal("0.25"), Decimal("2.0")) if adjusted else (None,) * 3
    return [DailyBar(date=FIRST + datetime.timedelta(days=n), open_price=Decimal(open_price),
                     high_price=Decimal("12"), low_price=Decimal("9.5"),
                     close_price=Decimal("11.5"), adjusted_close_price=extra[0], volume=n,
                     dividend_amount=extra[1], split_coefficient=extra[2])
            for n in range(days)]


def stored_rows(session, symbol: str = "IBM") -> dict:
    """Return {date: every value column} of the stored rows of ``symbol``."""
    rows = session.execute(select(FinancialData).where(FinancialData.symbol == symbol))
    return {row.date: tuple(getattr(row, name) for name in VALUE_COLUMNS)
            for row in rows.scalars()}


def stored(session, symbol: str = "IBM") -> dict:
    rows = session.execute(
        select(FinancialData.date, FinancialData.open_price, FinancialData.close_price,
               FinancialData.volume).where(FinancialData.symbol == symbol))
    return {day: (open_price, close_price, int(volume))
            for day, open_price, close_price, volume in rows}


def test_store_prices_counts_new_and_changed_rows_exactly(db_session):
    assert store_prices(db_session, "IBM", frame_of(5)) == StoreResult("IBM", 5, 5, 0)
    assert store_prices(db_session, "IBM", frame_of(5)) == StoreResult("IBM", 5, 0, 0)
    changed = frame_of(7)
    changed[0] = dataclasses.replace(changed[0], open_price=Decimal("10.0001"))
    assert store_prices(db_session, "IBM", changed) == StoreResult("IBM", 7, 2, 1)
    rows = stored(db_session)
    assert len(rows) == 7
    assert rows[FIRST] == (Decimal("10.0001"), Decimal("11.5"), 0)


def test_a_store_changed_something_when_it_added_or_updated_a_row(db_session):
    assert store_prices(db_session, "IBM", frame_of(2)).changed, "new rows only"
    assert not store_prices(db_session, "IBM", frame_of(2)).changed, "nothing new or updated"
    updated = [dataclasses.replace(bar, open_price=Decimal("10.0001")) for bar in frame_of(2)]
    assert store_prices(db_session, "IBM", updated).changed, "updated rows only"


def test_a_later_run_without_adjusted_values_keeps_them_and_counts_nothing(db_session):
    assert store_prices(db_session, "IBM", frame_of(3, adjusted=True)) == StoreResult(
        "IBM", 3, 3, 0)
    before = stored_rows(db_session)
    assert before[FIRST][4:] == (Decimal("11.1234"), 0, Decimal("0.25"), Decimal("2.0"))
    assert store_prices(db_session, "IBM", frame_of(3)) == StoreResult("IBM", 3, 0, 0)
    assert stored_rows(db_session) == before


def test_a_changed_day_without_adjusted_values_updates_the_rest_and_keeps_them(db_session):
    store_prices(db_session, "IBM", frame_of(3, adjusted=True))
    free_tier = frame_of(4, open_price="10.5")
    assert store_prices(db_session, "IBM", free_tier) == StoreResult("IBM", 4, 1, 3)
    rows = stored_rows(db_session)
    assert rows[FIRST] == (Decimal("10.5"), Decimal("12"), Decimal("9.5"), Decimal("11.5"),
                           Decimal("11.1234"), 0, Decimal("0.25"), Decimal("2.0"))
    assert rows[FIRST + datetime.timedelta(days=3)][4:] == (None, 3, None, None)


def test_an_adjusted_run_fills_the_adjusted_values_of_stored_days(db_session):
    store_prices(db_session, "IBM", frame_of(2))
    assert store_prices(db_session, "IBM", frame_of(2, adjusted=True)) == StoreResult(
        "IBM", 2, 0, 2)
    assert stored_rows(db_session)[FIRST][4:] == (Decimal("11.1234"), 0, Decimal("0.25"),
                                                  Decimal("2.0"))


def test_days_stored_without_high_and_low_get_them_from_the_next_run(db_session):
    db_session.execute(insert(FinancialData), [
        {"symbol": "IBM", "date": FIRST + datetime.timedelta(days=n),
         "open_price": Decimal("10"), "close_price": Decimal("11.5"), "volume": n}
        for n in range(2)])
    assert stored_rows(db_session)[FIRST][1:3] == (None, None)
    assert store_prices(db_session, "IBM", frame_of(2)) == StoreResult("IBM", 2, 0, 2)
    assert stored_rows(db_session)[FIRST][1:3] == (Decimal("12"), Decimal("9.5"))


def upsert(session, rows: list[dict], keep_when_null: tuple[str, ...] = ()) -> None:
    """Upsert ``rows`` (dicts with the same keys) by (symbol, date) as store_prices does."""
    codec = row_codec(session, FinancialData, rows[0])
    encoded = codec.encode(tuple(row[name] for name in codec.columns) for row in rows)
    upsert_encoded(session, codec, encoded, key_columns=("symbol", "date"),
                   keep_when_null=keep_when_null)


def test_upsert_keeps_stored_values_where_told_to_keep_them_over_null(db_session):
    row = {"symbol": "X", "date": FIRST, "open_price": Decimal("1"), "close_price": Decimal("2"),
           "volume": 3, "dividend_amount": Decimal("0.5"), "split_coefficient": Decimal("4")}
    upsert(db_session, [row])
    upsert(db_session, [{**row, "close_price": Decimal("2.5"), "dividend_amount": None,
                         "split_coefficient": None}], keep_when_null=("dividend_amount",))
    stored = db_session.execute(select(FinancialData)).scalar_one()
    assert (stored.close_price, stored.dividend_amount, stored.split_coefficient) == (
        Decimal("2.5"), Decimal("0.5"), None)


def test_the_upsert_takes_each_row_as_a_tuple_on_every_backend(db_session):
    """Drivers render a tuple's values with less work than a dict's (PyMySQL's pyformat)."""
    codec = row_codec(db_session, FinancialData, ("symbol", "date", *VALUE_COLUMNS))
    sql, positional = _upsert_sql(codec, frozenset({"symbol", "date"}), frozenset())
    assert positional
    assert "%(" not in sql and ":symbol" not in sql


def test_compiling_the_upsert_leaves_the_engine_s_dialect_as_it_was(db_session):
    """The %s placeholders come from a copy: the engine's other statements keep theirs."""
    dialect = db_session.get_bind().dialect
    before = (dialect.paramstyle, dialect.positional)
    codec = row_codec(db_session, FinancialData, ("symbol", "date", "volume"))
    _upsert_sql(codec, frozenset({"symbol", "date"}), frozenset())
    assert (dialect.paramstyle, dialect.positional) == before


def test_no_upsert_is_made_up_for_another_database():
    codec = row_codec_for(oracle.dialect())
    with pytest.raises(NotImplementedError, match="no upsert for the oracle dialect"):
        _upsert_sql(codec, frozenset({"symbol", "date"}), frozenset())


def row_codec_for(dialect):
    return RowCodec(dialect, FinancialData.__table__, ("symbol", "date", "volume"))


def test_store_prices_of_an_empty_frame_writes_nothing(db_session):
    assert store_prices(db_session, "IBM", frame_of(0)) == StoreResult("IBM", 0, 0, 0)
    assert stored(db_session) == {}


def test_upsert_inserts_then_updates_in_place_across_chunks(db_session):
    count = UPSERT_CHUNK_SIZE + 3
    rows = [{"symbol": "X", "date": FIRST + datetime.timedelta(days=n),
             "open_price": Decimal("1.0000"), "close_price": Decimal("2.0000"), "volume": n}
            for n in range(count)]
    upsert(db_session, rows)
    upsert(db_session, [{**row, "close_price": Decimal("3.0001")} for row in rows[-2:]])
    result = stored(db_session, "X")
    assert len(result) == count
    assert result[FIRST] == (Decimal("1.0000"), Decimal("2.0000"), 0)
    assert [result[row["date"]][1] for row in rows[-3:]] == [
        Decimal("2.0000"), Decimal("3.0001"), Decimal("3.0001")]


def test_a_symbol_stored_on_the_days_of_another_is_new(db_session):
    assert store_prices(db_session, "IBM", frame_of(3)) == StoreResult("IBM", 3, 3, 0)
    assert store_prices(db_session, "AAPL", frame_of(3)) == StoreResult("AAPL", 3, 3, 0)
    assert stored(db_session, "AAPL") == stored(db_session, "IBM")
    assert len(stored(db_session, "AAPL")) == 3


def edge_days(**forms: str) -> list[DailyBar]:
    """Days of values at the columns' edges; ``forms`` writes some of them otherwise.

    Trailing zeros, negative prices, the adjusted values missing, the largest
    DECIMAL(18, 4) and DECIMAL(18, 8), a volume past 32 bits, zeros.
    """
    values = {"open": "10.5", "split": "1.0", "dividend": "0.0000", "negative": "-1.5",
              "small": "-0.0001", "largest": "99999999999999.9999", "zero": "0", **forms}
    day = [FIRST + datetime.timedelta(days=n) for n in range(5)]
    price = {name: Decimal(value) for name, value in values.items()}
    return [
        DailyBar(date=day[0], open_price=price["open"], high_price=Decimal("12"),
                 low_price=Decimal("9.5"), close_price=Decimal("11.5"),
                 adjusted_close_price=Decimal("11.5"), volume=0,
                 dividend_amount=price["dividend"], split_coefficient=price["split"]),
        DailyBar(date=day[1], open_price=price["negative"], high_price=price["zero"],
                 low_price=price["negative"], close_price=price["small"],
                 adjusted_close_price=price["negative"], volume=1,
                 dividend_amount=price["small"], split_coefficient=price["negative"]),
        DailyBar(date=day[2], open_price=price["open"], high_price=None, low_price=None,
                 close_price=price["open"], adjusted_close_price=None, volume=2,
                 dividend_amount=None, split_coefficient=None),
        DailyBar(date=day[3], open_price=price["largest"], high_price=price["largest"],
                 low_price=price["largest"], close_price=price["largest"],
                 adjusted_close_price=price["largest"], volume=2**62,
                 dividend_amount=price["largest"],
                 split_coefficient=Decimal("9999999999.99999999")),
        DailyBar(date=day[4], open_price=price["zero"], high_price=price["zero"],
                 low_price=price["zero"], close_price=price["zero"],
                 adjusted_close_price=price["zero"], volume=0,
                 dividend_amount=price["zero"], split_coefficient=price["zero"]),
    ]


SAME_VALUES_WRITTEN_OTHERWISE = {
    "open": "10.5000", "split": "1.00000000", "dividend": "0", "negative": "-1.50",
    "small": "-0.00010", "zero": "0E-8"}


def test_edge_values_stored_again_as_they_are_or_written_otherwise_count_nothing(db_session):
    assert store_prices(db_session, "IBM", edge_days()) == StoreResult("IBM", 5, 5, 0)
    before = stored_rows(db_session)
    assert store_prices(db_session, "IBM", edge_days()) == StoreResult("IBM", 5, 0, 0)
    assert store_prices(db_session, "IBM", edge_days(**SAME_VALUES_WRITTEN_OTHERWISE)) == (
        StoreResult("IBM", 5, 0, 0))
    assert store_prices(db_session, "IBM", edge_days(zero="-0.0000")) == (
        StoreResult("IBM", 5, 0, 0))
    assert stored_rows(db_session) == before
    assert before[FIRST + datetime.timedelta(days=1)][:2] == (Decimal("-1.5"), Decimal("0"))
    assert before[FIRST + datetime.timedelta(days=3)][5] == 2**62


def test_changes_at_the_edges_of_the_range_are_counted_and_written(db_session):
    store_prices(db_session, "IBM", frame_of(7))
    window = frame_of(7)[2:5]
    window[0] = dataclasses.replace(window[0], close_price=Decimal("11.5001"))
    window[-1] = dataclasses.replace(window[-1], adjusted_close_price=Decimal("-0.0001"))
    assert store_prices(db_session, "IBM", window) == StoreResult("IBM", 3, 0, 2)
    rows = stored_rows(db_session)
    assert [rows[bar.date] for bar in window] == [
        tuple(getattr(bar, name) for name in VALUE_COLUMNS) for bar in window]
    assert store_prices(db_session, "IBM", window) == StoreResult("IBM", 3, 0, 0)
    assert store_prices(db_session, "IBM", frame_of(8)[1:]) == StoreResult("IBM", 7, 1, 1)


def encoded(session, bars: list[DailyBar]) -> tuple[RowCodec, list[tuple]]:
    codec = row_codec(session, FinancialData, ROW_COLUMNS)
    return codec, codec.encode(_row("IBM", bar) for bar in bars)


def unchanged(session, bars: list[DailyBar]) -> list[bool] | None:
    codec, rows = encoded(session, bars)
    return rows_stored_unchanged(session, codec, rows, ROW_COLUMNS[1:],
                                 *_stored_range(codec, "IBM", bars[0].date, bars[-1].date))


def test_stored_rows_read_as_text_are_unchanged_only_where_every_value_is_equal(db_session):
    """MySQL writes the stored rows as text, compared with the rows written alike here.

    It also tells when nothing is stored. Elsewhere every row is left to the
    comparison of values.
    """
    reads_text = db_session.get_bind().dialect.name in ("mysql", "mariadb")
    assert unchanged(db_session, edge_days()) == (None if reads_text else [False] * 5)
    store_prices(db_session, "IBM", edge_days())
    assert unchanged(db_session, edge_days()) == [reads_text] * 5
    assert unchanged(db_session, edge_days(**SAME_VALUES_WRITTEN_OTHERWISE)) == [reads_text] * 5
    # -0 is written with its sign here, stored without: left to the values' comparison.
    assert unchanged(db_session, edge_days(zero="-0")) == [
        reads_text, False, reads_text, reads_text, False]
    assert unchanged(db_session, edge_days(small="-0.0002", zero="0.0001")) == [
        reads_text, False, reads_text, reads_text, False]
    assert unchanged(db_session, edge_days(largest="99999999999999.9998")) == [
        reads_text, reads_text, reads_text, False, reads_text]
    without_adjusted = [dataclasses.replace(bar, adjusted_close_price=None)
                        for bar in edge_days()]
    assert unchanged(db_session, without_adjusted) == [False, False, reads_text, False, False]


@pytest.mark.mysql  # SQLite refuses such a value before it is compared (RowCodec)
def test_a_value_with_more_places_than_stored_is_never_taken_as_stored(mysql_session):
    bars = frame_of(2)
    bars[1] = dataclasses.replace(bars[1], close_price=Decimal("11.50001"))
    assert store_prices(mysql_session, "IBM", bars) == StoreResult("IBM", 2, 2, 0)
    assert stored(mysql_session)[bars[1].date][1] == Decimal("11.5000")
    assert unchanged(mysql_session, bars) == [True, False]
    assert store_prices(mysql_session, "IBM", bars) == StoreResult("IBM", 2, 0, 1)


@pytest.mark.mysql  # SQLite's rows are never read as text
def test_days_without_adjusted_values_are_known_unchanged_from_the_text_of_the_rest(
        mysql_session, monkeypatch):
    """The upsert keeps the stored adjusted values: the other values' text tells it all."""
    store_prices(mysql_session, "IBM", frame_of(3, adjusted=True))
    before = stored_rows(mysql_session)

    def read_back(*args):
        raise AssertionError("a day without adjusted values was read back value by value")

    with monkeypatch.context() as patched:
        patched.setattr(financial.ingest, "_stored_values", read_back)
        assert store_prices(mysql_session, "IBM", frame_of(3)) == StoreResult("IBM", 3, 0, 0)
    changed = frame_of(3)
    changed[1] = dataclasses.replace(changed[1], volume=7)
    assert store_prices(mysql_session, "IBM", changed) == StoreResult("IBM", 3, 0, 1)
    after = stored_rows(mysql_session)
    day = FIRST + datetime.timedelta(days=1)
    assert after[day] == before[day][:5] + (7,) + before[day][6:]
    assert {key: value for key, value in after.items() if key != day} == {
        key: value for key, value in before.items() if key != day}


def test_one_adjusted_value_among_days_without_them_is_compared_and_written(db_session):
    """Only a run with no adjusted value on any day leaves them out of the comparison."""
    store_prices(db_session, "IBM", frame_of(3, adjusted=True))
    bars = frame_of(3)
    bars[1] = dataclasses.replace(bars[1], split_coefficient=Decimal("4.0"))
    assert store_prices(db_session, "IBM", bars) == StoreResult("IBM", 3, 0, 1)
    assert stored_rows(db_session)[bars[1].date][4:] == (
        Decimal("11.1234"), 1, Decimal("0.25"), Decimal("4.0"))


@pytest.mark.mysql  # SQLite's rows are never read as text
def test_a_text_cut_where_it_reads_as_another_row_leaves_the_row_unknown(mysql_session):
    """Cut before its split coefficient, the stored row reads as the row without one."""
    stored_text = "2023-01-02,10.0000,12.0000,9.5000,11.5000,11.1234,0,0.2500,2.00000000"
    store_prices(mysql_session, "IBM", frame_of(1, adjusted=True))
    without_split = [dataclasses.replace(frame_of(1, adjusted=True)[0], split_coefficient=None)]
    cut = len(stored_text) - len("2.00000000")
    mysql_session.execute(text(f"SET SESSION group_concat_max_len = {cut}"))
    try:
        assert unchanged(mysql_session, without_split) == [False]
    finally:
        mysql_session.execute(text("SET SESSION group_concat_max_len = DEFAULT"))
    assert unchanged(mysql_session, without_split) == [False]
    assert unchanged(mysql_session, frame_of(1, adjusted=True)) == [True]


@pytest.mark.mysql  # SQLite's rows are never read as text
def test_the_text_s_limit_is_where_the_server_cuts_it_past_the_packet_size_too(mysql_session):
    codec, _ = encoded(mysql_session, frame_of(1))
    packet = mysql_session.execute(text("SELECT @@max_allowed_packet")).scalar_one()
    mysql_session.execute(text(f"SET SESSION group_concat_max_len = {2 * packet},"
                               f" max_recursive_iterations = {packet}"))
    try:
        cut_at = mysql_session.execute(text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i <= :rows)"
            " SELECT LENGTH(GROUP_CONCAT(REPEAT('x', 999) SEPARATOR ';')) FROM n"),
            {"rows": packet // 1000}).scalar_one()
        limit = mysql_session.execute(_stored_texts(codec, tuple(ROW_COLUMNS[1:]))).one()[0]
    finally:
        mysql_session.execute(text("SET SESSION group_concat_max_len = DEFAULT,"
                                   " max_recursive_iterations = DEFAULT"))
    assert cut_at == limit == packet


@pytest.mark.mysql  # SQLite's rows are never read as text
def test_rows_whose_text_the_server_would_cut_are_compared_by_value(mysql_session):
    store_prices(mysql_session, "IBM", edge_days())
    mysql_session.execute(text("SET SESSION group_concat_max_len = 40"))
    try:
        assert unchanged(mysql_session, edge_days()) == [False] * 5
        assert store_prices(mysql_session, "IBM", edge_days()) == StoreResult("IBM", 5, 0, 0)
        changed = edge_days(negative="-1.4")
        assert store_prices(mysql_session, "IBM", changed) == StoreResult("IBM", 5, 0, 1)
    finally:
        mysql_session.execute(text("SET SESSION group_concat_max_len = DEFAULT"))


def test_store_symbol_commits_one_transaction(app):
    with app.app_context():
        assert store_symbol(db.session(), "IBM", frame_of(3)) == StoreResult("IBM", 3, 3, 0)
        db.session.remove()
        assert len(stored(db.session())) == 3


def test_store_symbol_rolls_back_and_raises_other_errors(app):
    with app.app_context():
        store_symbol(db.session(), "IBM", frame_of(2))
        bad = frame_of(4)
        bad[3] = dataclasses.replace(bad[3], close_price=None)  # the column is NOT NULL
        sleeps = []
        with pytest.raises(IntegrityError):
            store_symbol(db.session(), "IBM", bad, sleep=sleeps.append)
        assert sleeps == [], "only lock conflicts are retried"
        assert len(stored(db.session())) == 2


def test_store_symbol_hands_its_result_to_before_commit_whose_failure_rolls_it_back(app):
    def refuse(_result):
        raise RuntimeError("the run history refused the row")

    with app.app_context():
        seen = []
        store_symbol(db.session(), "IBM", frame_of(2), before_commit=seen.append)
        assert seen == [StoreResult("IBM", 2, 2, 0)]
        with pytest.raises(RuntimeError):
            store_symbol(db.session(), "AAPL", frame_of(3), before_commit=refuse)
        db.session.remove()
        assert (len(stored(db.session())), len(stored(db.session(), "AAPL"))) == (2, 0)


def test_a_symbol_failing_past_its_first_chunk_keeps_its_rows_under_a_turkish_locale(
        app, turkish_locale):
    """pysqlite (Python 3.11, 3.12) did not see "INSERT" as a write there, so never began one."""
    with app.app_context():
        store_symbol(db.session(), "IBM", frame_of(2))
        bad = frame_of(UPSERT_CHUNK_SIZE + 10)
        bad[-1] = dataclasses.replace(bad[-1], close_price=None)  # the column is NOT NULL
        with pytest.raises(IntegrityError):
            store_symbol(db.session(), "IBM", bad)
        db.session.remove()
        assert len(stored(db.session())) == 2


class RowLockHolder:
    """A second connection holding a write lock on the row (IBM, FIRST) until released."""

    def __init__(self, engine) -> None:
        self.connection = engine.connect()
        self.released = False
        try:
            self._lock(engine.dialect.name)
        except BaseException:
            # Else the failed test's traceback keeps the lock, and every later test waits on it.
            self.release()
            raise

    def _lock(self, dialect: str) -> None:
        if dialect == "sqlite":
            self.connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            self.connection.begin()
        # Typed, so SQLAlchemy renders the date: Python 3.12 deprecates sqlite3's own adapter.
        self.connection.execute(text(
            "INSERT INTO financial_data (symbol, date, open_price, close_price, volume) "
            "VALUES ('IBM', :day, 1, 1, 1)").bindparams(bindparam("day", FIRST, type_=Date)))

    def release(self, _seconds: float = 0) -> None:
        if not self.released:
            self.connection.rollback()
            self.connection.close()
            self.released = True


@pytest.fixture
def impatient_session(app):
    """A session on one connection whose lock waits fail within a second."""
    with app.app_context(), db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA busy_timeout = 200")
        else:
            connection.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        connection.commit()
        with Session(bind=connection) as session:
            yield session


def test_store_symbol_retries_a_lock_conflict_then_stores(impatient_session):
    holder = RowLockHolder(impatient_session.get_bind().engine)
    pauses = []

    def wait_then_release(seconds: float) -> None:
        pauses.append(seconds)
        holder.release()

    try:
        result = store_symbol(impatient_session, "IBM", frame_of(3), pause=0.01,
                              sleep=wait_then_release)
    finally:
        holder.release()
    assert result == StoreResult("IBM", 3, 3, 0)
    assert pauses == [0.01]
    assert len(stored(impatient_session)) == 3


def test_store_symbol_gives_up_after_its_attempts(impatient_session, caplog):
    holder = RowLockHolder(impatient_session.get_bind().engine)
    pauses = []
    try:
        with pytest.raises(OperationalError):
            store_symbol(impatient_session, "IBM", frame_of(3), attempts=3, pause=0.01,
                         sleep=pauses.append)
        assert not impatient_session.in_transaction(), "the last attempt is rolled back too"
    finally:
        holder.release()
    assert pauses == [0.01, 0.02], "a growing pause between attempts"
    assert [record.getMessage() for record in caplog.records
            if record.name == "financial.ingest"] == [
        "storing IBM hit OperationalError; retrying (1 of 2)",
        "storing IBM hit OperationalError; retrying (2 of 2)"]
    assert stored(impatient_session) == {}


def test_a_lock_conflict_is_tried_as_often_and_as_far_apart_as_the_readme_says(
        impatient_session):
    """The fetch job stores with store_symbol's defaults; here the conflict outlasts them all."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    documented = re.search(r"lock conflict with a concurrent run\s+is retried: (\d+) attempts "
                           r"in all, ([\d.]+) s and then ([\d.]+) s apart", readme)
    assert documented, "the README no longer says how a lock conflict is retried"
    holder = RowLockHolder(impatient_session.get_bind().engine)
    pauses: list[float] = []
    try:
        with pytest.raises(OperationalError):
            store_symbol(impatient_session, "IBM", frame_of(3), sleep=pauses.append)
    finally:
        holder.release()
    assert (len(pauses) + 1, pauses) == (
        int(documented[1]), [float(documented[2]), float(documented[3])])
    assert stored(impatient_session) == {}


def month_sums(session) -> list[tuple]:
    return [tuple(row) for row in session.execute(
        select(MonthlyPriceSums.symbol, MonthlyPriceSums.month, MonthlyPriceSums.days,
               MonthlyPriceSums.open_sum, MonthlyPriceSums.close_sum, MonthlyPriceSums.volume_sum)
        .order_by(MonthlyPriceSums.symbol, MonthlyPriceSums.month))]


def test_storing_keeps_the_monthly_sums_equal_to_the_stored_days(db_session):
    def window(first: datetime.date, days: int, open_price: str) -> list[DailyBar]:
        return [dataclasses.replace(bar, date=first + datetime.timedelta(days=n))
                for n, bar in enumerate(frame_of(days, open_price=open_price))]

    runs = [window(D(2023, 1, 20), 30, "10.0000"),   # new days over two months
            window(D(2023, 2, 10), 30, "10.0000"),   # some known, new ones into March
            window(D(2023, 1, 25), 10, "10.5000"),   # changed days across a month's end
            window(D(2022, 12, 28), 6, "9.0000")]    # older days before the first
    for bars in runs:
        store_prices(db_session, "IBM", bars)
        kept = month_sums(db_session)
        refresh_monthly_sums(db_session)
        assert month_sums(db_session) == kept
    assert [row[1:3] for row in kept] == [(202212, 4), (202301, 14), (202302, 28), (202303, 11)]
    assert sum(row[2] for row in kept) == len(stored(db_session))


def test_storing_one_symbol_keeps_the_monthly_sums_of_another(db_session):
    store_prices(db_session, "AAPL", frame_of(10, open_price="20.0000"))
    aapl = [row for row in month_sums(db_session) if row[0] == "AAPL"]
    store_prices(db_session, "IBM", frame_of(10))
    assert [row for row in month_sums(db_session) if row[0] == "AAPL"] == aapl
    assert [row[:3] for row in month_sums(db_session)] == [("AAPL", 202301, 10),
                                                           ("IBM", 202301, 10)]
