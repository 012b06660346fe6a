"""The migrated schema is the contract's table on every backend."""
import datetime
import logging
import os
import re
import subprocess
import sys
import threading
from decimal import Decimal

import click
import pytest
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, stamp, upgrade
from sqlalchemy import Date, bindparam, create_engine, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app import MIGRATIONS_DIR, SCHEMA_REVISION, MigrationHistoryError, upgrade_to_head
from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.models import FetchRun, FetchRunSymbol, FinancialData, MonthlyPriceSums
from lib import locks
from lib.locks import migration_lock
from tests.helpers import build_app, create_mysql_database, drop_mysql_database

PRICE = "DECIMAL(18, 4)"
CONTRACT_COLUMNS = {
    "mysql": {"symbol": "VARCHAR(16)", "date": "DATE", "open_price": PRICE, "high_price": PRICE,
              "low_price": PRICE, "close_price": PRICE, "adjusted_close_price": PRICE,
              "volume": "BIGINT UNSIGNED", "dividend_amount": PRICE,
              "split_coefficient": "DECIMAL(18, 8)"},
    # SQLite has no DECIMAL: decimals are exact integer counts of 10**-scale.
    "sqlite": {"symbol": "VARCHAR(16)", "date": "DATE", "open_price": "BIGINT",
               "high_price": "BIGINT", "low_price": "BIGINT", "close_price": "BIGINT",
               "adjusted_close_price": "BIGINT", "volume": "BIGINT", "dividend_amount": "BIGINT",
               "split_coefficient": "BIGINT"},
}
NOT_NULL = {"symbol", "date", "open_price", "close_price", "volume"}


def _type_name(column_type, dialect) -> str:
    """Compile a reflected type, without collation or MariaDB's display width."""
    compiled = column_type.compile(dialect=dialect).split(" COLLATE")[0]
    return re.sub(r"^BIGINT\(\d+\)", "BIGINT", compiled)


def test_migrated_table_has_exactly_the_contract_columns(db_session):
    engine = db_session.get_bind()
    inspector = inspect(engine)
    columns = {column["name"]: column for column in inspector.get_columns("financial_data")}
    found = {name: _type_name(column["type"], engine.dialect) for name, column in columns.items()}
    assert found == CONTRACT_COLUMNS[engine.dialect.name]
    assert {name for name, column in columns.items() if not column["nullable"]} == NOT_NULL


HISTORY_COLUMNS = {
    "fetch_runs": ["id", "started_at", "finished_at", "trigger", "status", "rows_new",
                   "rows_updated", "message"],
    "fetch_run_symbols": ["run_id", "symbol", "status", "rows_fetched", "rows_new",
                          "rows_updated", "newest_date", "error"],
}


@pytest.mark.parametrize("table", sorted(HISTORY_COLUMNS))
def test_migrated_history_tables_have_the_contract_columns(db_session, table):
    """Operators read the run history with SQL too: its column names are part of the contract."""
    columns = inspect(db_session.get_bind()).get_columns(table)
    assert [column["name"] for column in columns] == HISTORY_COLUMNS[table]


def test_symbol_and_date_form_the_primary_key_and_date_symbol_is_indexed(db_session):
    inspector = inspect(db_session.get_bind())
    assert inspector.get_pk_constraint("financial_data")["constrained_columns"] == [
        "symbol", "date"]
    indexes = {index["name"]: index["column_names"]
               for index in inspector.get_indexes("financial_data")}
    assert indexes["ix_financial_data_date_symbol"] == ["date", "symbol"]


def test_the_table_refuses_a_second_row_for_a_symbol_and_day(db_session):
    row = {"symbol": "IBM", "date": datetime.date(2023, 1, 3), "open_price": Decimal("1.00"),
           "close_price": Decimal("1.00"), "volume": 1}
    db_session.execute(insert(FinancialData), [row])
    with pytest.raises(IntegrityError):
        db_session.execute(insert(FinancialData), [row])


def test_the_migration_matches_the_models(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_prices_round_trip_exactly(db_session):
    values = [Decimal("0.0001"), Decimal("12.3456"), Decimal("99999999999999.9999")]
    db_session.execute(insert(FinancialData), [
        {"symbol": "X", "date": datetime.date(2023, 1, day + 1), "open_price": value,
         "close_price": value, "volume": 0} for day, value in enumerate(values)])
    stored = db_session.query(FinancialData.open_price).order_by(FinancialData.date).all()
    assert [row.open_price for row in stored] == values


def test_split_coefficients_round_trip_exactly_up_to_the_column_limit(db_session):
    values = [Decimal("1.0"), Decimal("0.33333333"), Decimal("4"), Decimal("9999999999.99999999")]
    db_session.execute(insert(FinancialData), [
        {"symbol": "X", "date": datetime.date(2023, 1, day + 1), "open_price": Decimal(1),
         "close_price": Decimal(1), "volume": 0, "split_coefficient": value}
        for day, value in enumerate(values)])
    stored = db_session.query(FinancialData.split_coefficient).order_by(FinancialData.date).all()
    assert [row.split_coefficient for row in stored] == values


def test_new_columns_are_null_unless_given(db_session):
    db_session.execute(insert(FinancialData), [
        {"symbol": "X", "date": datetime.date(2023, 1, 2), "open_price": Decimal(1),
         "close_price": Decimal(2), "volume": 3}])
    row = db_session.query(FinancialData).one()
    assert (row.high_price, row.low_price, row.adjusted_close_price, row.dividend_amount,
            row.split_coefficient) == (None, None, None, None, None)


def test_adding_the_new_columns_keeps_old_rows_and_can_be_undone(empty_database_url, tmp_path):
    original = (FinancialData.symbol, FinancialData.date, FinancialData.open_price,
                FinancialData.close_price, FinancialData.volume)
    row = ("IBM", datetime.date(2023, 1, 3), Decimal("141.10"), Decimal("12.3456"), 3458353)
    application = build_app(empty_database_url, tmp_path / "log")
    with application.app_context():
        try:
            upgrade(revision="0001")
            db.session.execute(insert(FinancialData).values(dict(zip(
                [column.key for column in original], row))))
            db.session.commit()
            upgrade(revision="0002")
            stored = db.session.execute(select(FinancialData)).scalar_one()
            assert (stored.open_price, stored.high_price, stored.split_coefficient) == (
                Decimal("141.10"), None, None)
            db.session.rollback()
            downgrade(revision="0001")
            assert [column["name"] for column in inspect(db.engine).get_columns(
                "financial_data")] == ["symbol", "date", "open_price", "close_price", "volume"]
            assert db.session.execute(select(*original)).one() == row
            inspector = inspect(db.engine)
            assert inspector.get_pk_constraint("financial_data")["constrained_columns"] == [
                "symbol", "date"]
            assert [index["column_names"] for index in inspector.get_indexes(
                "financial_data")] == [["date", "symbol"]]
        finally:
            db.session.remove()
            db.engine.dispose()


def test_a_migration_killed_after_its_first_statements_runs_again(empty_database_url, tmp_path):
    """MySQL commits each DDL statement: a killed run leaves part of its work, one revision back."""
    row = {"symbol": "IBM", "date": datetime.date(2023, 1, 31), "open_price": Decimal("141.1"),
           "close_price": Decimal("12.3456"), "volume": 3458353}
    application = build_app(empty_database_url, tmp_path / "log")
    with application.app_context():
        try:
            upgrade(revision="0001")
            db.session.execute(insert(FinancialData).values(
                {key: row[key] for key in ("symbol", "date", "open_price", "close_price",
                                           "volume")}))
            db.session.commit()
            for revision, before in (("0002", "0001"), ("0003", "0002"), ("0004", "0003")):
                upgrade(revision=revision)
                stamp(revision=before)  # what the kill leaves: the work done, the revision not
                upgrade(revision=revision)
            sums = db.session.execute(select(MonthlyPriceSums)).scalar_one()
            assert (sums.month, sums.days, sums.open_sum, sums.volume_sum) == (
                202301, 1, Decimal("141.1"), 3458353)
            assert db.session.execute(select(FinancialData.open_price)).scalar_one() == Decimal(
                "141.1")
        finally:
            db.session.remove()
            db.engine.dispose()


def test_run_history_found_at_revision_0002_is_kept_and_the_upgrade_says_what_to_do(
        empty_database_url, tmp_path, caplog):
    """An older dump restored into a newer database, or the revision stamped back, leaves
    filled run-history tables below 0003, whose upgrade once dropped them as its leftovers."""
    application = build_app(empty_database_url, tmp_path / "log")
    cli = application.test_cli_runner()
    with application.app_context():
        try:
            upgrade()
            run = FetchRun(started_at=datetime.datetime(2023, 3, 24, 22, 30),
                           trigger="manual", status="ok", rows_new=1, rows_updated=0)
            db.session.add(run)
            db.session.flush()
            db.session.add(FetchRunSymbol(run_id=run.id, symbol="IBM", status="ok",
                                          rows_fetched=1, rows_new=1, rows_updated=0))
            db.session.commit()
            db.session.remove()
            stamp(revision="0002")

            with pytest.raises(MigrationHistoryError) as caught:
                upgrade_to_head()
            refused = cli.invoke(args=["db", "upgrade"])

            assert str(caught.value).startswith(
                "fetch_run_symbols and fetch_runs already hold fetch runs, though the database "
                "records revision 0002")
            assert "`flask db stamp 0003`" in str(caught.value)
            assert "hint" not in str(caught.value)
            assert refused.exit_code == 1  # Flask-Migrate logs Alembic's refusal as "Error: ..."
            assert ("flask_migrate", logging.ERROR,
                    f"Error: {caught.value}") in caplog.record_tuples
            assert db.session.execute(select(FetchRunSymbol.symbol)).scalars().all() == ["IBM"]
            stamp(revision="0003")
            upgrade()
            assert db.session.execute(select(FetchRun.status)).scalars().all() == ["ok"]
        finally:
            db.session.remove()
            db.engine.dispose()


def test_a_downgrade_killed_after_its_first_statements_runs_again(empty_database_url, tmp_path):
    """Each DROP commits on its own (MySQL; SQLite outside the copy's transaction): a killed
    downgrade leaves part of its work, the revision still the one it undoes, and running
    it again failed on what was gone, while its error said to run it again."""
    kept = {"symbol": "IBM", "date": datetime.date(2023, 1, 31), "open_price": Decimal("141.1"),
            "close_price": Decimal("12.3456"), "volume": 99_999_999_999_999}
    application = build_app(empty_database_url, tmp_path / "log")
    with application.app_context():
        try:
            upgrade()
            db.session.execute(insert(FinancialData).values(
                {**kept, "high_price": Decimal("150"), "split_coefficient": Decimal("0.3333")}))
            db.session.commit()
            downgrade(revision="0004")
            # 0004 -> 0003 killed after dropping the monthly sums.
            MonthlyPriceSums.__table__.drop(db.engine)
            downgrade(revision="0003")
            # 0003 -> 0002 killed after dropping the symbols' outcomes.
            FetchRunSymbol.__table__.drop(db.engine)
            downgrade(revision="0002")
            assert not {"fetch_runs", "fetch_run_symbols"} & set(
                inspect(db.engine).get_table_names())
            # 0002 -> 0001 killed: MySQL dropped a column; SQLite left the empty copy of
            # the table that its batch mode creates before the copy's transaction.
            if db.engine.dialect.name == "sqlite":
                db.session.execute(text(
                    "CREATE TABLE _alembic_tmp_financial_data (symbol VARCHAR(16) NOT NULL)"))
            else:
                db.session.execute(text("ALTER TABLE financial_data DROP COLUMN split_coefficient"))
            db.session.commit()
            downgrade(revision="0001")
            assert inspect(db.engine).get_table_names() == ["alembic_version", "financial_data"]
            assert db.session.execute(select(*(getattr(FinancialData, name) for name in kept))
                                      ).one() == tuple(kept.values())
            db.session.rollback()
            # 0001 -> base killed after dropping the index.
            for index in FinancialData.__table__.indexes:
                index.drop(db.engine)
            downgrade(revision="base")
            assert inspect(db.engine).get_table_names() == ["alembic_version"]
        finally:
            db.session.remove()
            db.engine.dispose()


def test_a_schema_recorded_at_0003_without_the_columns_of_0002_gets_them(empty_database_url,
                                                                         tmp_path, caplog):
    """The history once chained 0003 straight after 0001: a database migrated then records
    0003 without 0002's columns, which upgrading never added; every fetch failed on them."""
    kept = {"symbol": "IBM", "date": datetime.date(2023, 1, 31), "open_price": Decimal("141.1"),
            "close_price": Decimal("12.3456"), "volume": 99_999_999_999_999}
    application = build_app(empty_database_url, tmp_path / "log")
    with application.app_context():
        try:
            upgrade(revision="0003")
            for name in ("high_price", "low_price", "adjusted_close_price", "dividend_amount",
                         "split_coefficient"):
                db.session.execute(text(f"ALTER TABLE financial_data DROP COLUMN {name}"))
            db.session.execute(text(
                "INSERT INTO financial_data (symbol, date, open_price, close_price, volume) "
                "VALUES ('IBM', '2023-01-31', :open, :close, 99999999999999)"),
                {"open": 1411000, "close": 123456} if db.engine.dialect.name == "sqlite"
                else {"open": "141.1", "close": "12.3456"})
            db.session.commit()
            upgrade()
            assert ("alembic.env", logging.WARNING, "financial_data lacks high_price, low_price, "
                    "adjusted_close_price, dividend_amount, split_coefficient, which migration "
                    "0002 adds (an older history recorded 0003 after 0001): adding them"
                    ) in caplog.record_tuples
            from alembic.autogenerate import compare_metadata
            from alembic.migration import MigrationContext
            with db.engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, db.metadata) == []
            stored = db.session.execute(select(FinancialData)).scalar_one()
            assert ({name: getattr(stored, name) for name in kept}, stored.high_price) == (
                kept, None)
            sums = db.session.execute(select(MonthlyPriceSums)).scalar_one()
            assert (sums.days, sums.open_sum, sums.volume_sum) == (
                1, Decimal("141.1"), 99_999_999_999_999)
        finally:
            db.session.remove()
            db.engine.dispose()


def test_a_first_migration_stopped_after_its_table_runs_again_but_keeps_a_filled_one(
        empty_database_url, tmp_path, caplog):
    """Stopped after its CREATE TABLE (killed, a full disk refusing the index), 0001 left an
    empty table and no revision, and every later start failed: "table already exists"."""
    row = {"symbol": "IBM", "date": datetime.date(2023, 1, 31), "open_price": 1411000,
           "close_price": 123456, "volume": 3458353}
    application = build_app(empty_database_url, tmp_path / "log")
    with application.app_context():
        try:
            upgrade(revision="0001")
            stamp(revision="base")  # what the stop leaves: the table, no revision
            upgrade()
            assert inspect(db.engine).has_table("monthly_price_sums")
            assert ("alembic.env", logging.WARNING, "financial_data is an empty table left by "
                    "an unfinished first migration: creating it again") in caplog.record_tuples
            downgrade(revision="base")
            upgrade(revision="0001")
            # Typed, so SQLAlchemy renders the date: Python 3.12 deprecates sqlite3's own adapter.
            db.session.execute(text(
                "INSERT INTO financial_data (symbol, date, open_price, close_price, volume) "
                "VALUES (:symbol, :date, :open_price, :close_price, :volume)"
            ).bindparams(bindparam("date", type_=Date)), row)
            db.session.commit()
            stamp(revision="base")  # a table of someone else's, with rows: not dropped
            with pytest.raises(DBAPIError, match="already exists"):
                upgrade()
            db.session.rollback()
            assert db.session.execute(text("SELECT COUNT(*) FROM financial_data")).scalar() == 1
        finally:
            db.session.remove()
            db.engine.dispose()


# SQLite's answers take no timeout.
@pytest.mark.parametrize("empty_database_url", [pytest.param("mysql", marks=pytest.mark.mysql)],
                         indirect=True)
def test_a_data_migration_may_take_longer_than_the_apis_read_timeout(empty_database_url,
                                                                     tmp_path):
    """``flask db upgrade`` builds the API's app, whose answers time out after seconds."""
    url = empty_database_url
    application = build_app(url, tmp_path / "log", DATABASE_TIMEOUT=1.0, DATABASE_READ_TIMEOUT=1.0)
    holder = create_engine(url)
    with application.app_context(), holder.connect() as connection:
        try:
            upgrade(revision="0003")
            # 0004 reads financial_data: it waits for the lock, longer than the read timeout.
            connection.execute(text("LOCK TABLES financial_data WRITE"))
            release = threading.Timer(3.0, connection.execute, [text("UNLOCK TABLES")])
            release.start()
            try:
                upgrade()
            finally:
                release.join()
            assert db.session.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                == SCHEMA_REVISION
        finally:
            db.session.remove()
            db.engine.dispose()
            holder.dispose()


@pytest.mark.mysql
@pytest.mark.parametrize("charset", ["latin1", "utf8mb3"])
def test_the_run_history_holds_any_text_on_a_database_of_another_character_set(
        charset, tmp_path):
    """MySQL 5.7 created databases as latin1: 0006 converts the history, keeping its text."""
    if not os.environ.get("TEST_MYSQL_URL"):
        pytest.skip("TEST_MYSQL_URL is not set")
    url = create_mysql_database(os.environ["TEST_MYSQL_URL"], charset)
    application = build_app(url, tmp_path / "log")
    started = datetime.datetime(2026, 12, 2, 6, 30)
    try:
        with application.app_context():
            upgrade(revision="0005")
            db.session.add(FetchRun(started_at=started, trigger="manual", status="ok",
                                    rows_new=1, rows_updated=0, message="café: 1 stored"))
            db.session.commit()
            # What a kill after 0006's first statement leaves: one table converted.
            db.session.execute(text("ALTER TABLE fetch_runs CONVERT TO CHARACTER SET utf8mb4"))
            upgrade()
            run = db.session.execute(select(FetchRun)).scalar_one()
            assert run.message == "café: 1 stored"
            run.message = "株価.json: cannot read a JSON response 📈"
            db.session.add(FetchRunSymbol(run_id=run.id, symbol="IBM", status="failed",
                                          error="Ошибка 📉"))
            db.session.commit()
            db.session.expunge_all()
            assert db.session.execute(select(FetchRun.message)).scalar_one() == (
                "株価.json: cannot read a JSON response 📈")
            assert db.session.execute(select(FetchRunSymbol.error)).scalar_one() == "Ошибка 📉"
            charsets = db.session.execute(text(
                "SELECT DISTINCT character_set_name FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name LIKE 'fetch_run%' "
                "AND character_set_name IS NOT NULL")).scalars().all()
            defaults = db.session.execute(text(
                "SELECT table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name LIKE 'fetch_run%'")).scalars()
            assert charsets == ["utf8mb4"]
            assert all(default.startswith("utf8mb4_") for default in defaults)
    finally:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()
        drop_mysql_database(url)


def test_flask_db_upgrade_waits_for_the_migration_lock(empty_database_url, tmp_path,
                                                       monkeypatch):
    """An operator's ``flask db upgrade`` never migrates alongside a starting container."""
    monkeypatch.setattr(locks, "MIGRATION_LOCK_TIMEOUT_SECONDS", 0.5)
    application = build_app(empty_database_url, tmp_path / "log")
    taken, done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:  # another thread: the lock is re-entrant only within one
        with application.app_context(), migration_lock(db.engine):
            taken.set()
            done.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert taken.wait(10)
        with application.app_context():
            with pytest.raises(click.ClickException, match="another process is still migrating"):
                upgrade()
            assert "financial_data" not in inspect(db.engine).get_table_names()
    finally:
        done.set()
        holder.join()
        with application.app_context():
            db.engine.dispose()


def test_the_schema_revision_names_the_newest_migration():
    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_heads() == [SCHEMA_REVISION]


# A developer autogenerates a migration with nothing to change, then adds an
# exact price column to the model and autogenerates its migration (README,
# "Developing"), in a copy of the migrations: the model's table is changed for
# this process only.
AUTOGENERATE_A_PRICE_COLUMN = """
import shutil, sys
from pathlib import Path
from flask_migrate import migrate, upgrade
from sqlalchemy import Column
from app import register_migrations
from financial.models import FinancialData
from lib.storage import ScaledDecimal
from tests.helpers import build_app, migrate_database, sqlite_url

folder = Path(sys.argv[1])
url = sqlite_url(folder)
migrate_database(url, folder / "log")
shutil.copytree("migrations", folder / "migrations")
app = build_app(url, folder / "log")
register_migrations(app)
with app.app_context():
    migrate(directory=str(folder / "migrations"), message="nothing changed", rev_id="9998")
    upgrade(directory=str(folder / "migrations"))
    FinancialData.__table__.append_column(Column("extra_price", ScaledDecimal(), nullable=True))
    migrate(directory=str(folder / "migrations"), message="add extra price", rev_id="9999")
    upgrade(directory=str(folder / "migrations"))
"""


def test_an_autogenerated_migration_writes_exact_prices_out_passes_flake8_and_runs(tmp_path):
    result = subprocess.run([sys.executable, "-c", AUTOGENERATE_A_PRICE_COLUMN, str(tmp_path)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"Running upgrade {SCHEMA_REVISION} -> 9998" in result.stderr
    assert "Running upgrade 9998 -> 9999" in result.stderr
    versions = tmp_path / "migrations" / "versions"
    migration = next(versions.glob("9999_*.py")).read_text()
    assert ("sa.Column('extra_price', sa.Numeric(18, 4).with_variant(sa.BigInteger(), "
            '"sqlite"), nullable=True)') in migration
    assert "lib." not in migration, "a migration keeps its types; it imports no app code"
    empty = next(versions.glob("9998_*.py")).read_text()
    assert f'revision = "9998"\ndown_revision = "{SCHEMA_REVISION}"\n' in empty
    assert "please adjust" not in empty + migration
    assert "import" not in empty
    # Alembic writes each command on one line; wrapping a long one is the author's part.
    lint = subprocess.run([sys.executable, "-m", "flake8", "--extend-ignore=E501",
                           *map(str, versions.glob("999*.py"))],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
