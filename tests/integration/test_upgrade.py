"""Upgrade day: a schema an older release left, migrated while that release's fetch runs go on.

The older release is played by the migrations of the repository (``upgrade(revision=...)``)
and by rows stored the way it stored them: prices without monthly sums.
"""
import datetime
import logging
import threading
from decimal import Decimal

from flask_migrate import upgrade
from sqlalchemy import insert, text

from app import MIGRATIONS_DIR, SCHEMA_REVISION, upgrade_to_head
from app.extensions import db
from financial.fetch_run import RUN_LOCK
from financial.models import FinancialData
from lib.locks import database_lock, migrate_unless_newer
from tests.helpers import build_app, wait_for


def _days(month: int, count: int, open_price: str, close_price: str, volume: int) -> list[dict]:
    return [{"symbol": "IBM", "date": datetime.date(2023, month, day + 2),
             "open_price": Decimal(open_price), "close_price": Decimal(close_price),
             "volume": volume} for day in range(count)]


def test_the_migration_waits_for_an_older_releases_run_and_counts_its_rows(
        empty_database_url, tmp_path):
    """A replica of the new release starts while the old scheduler's run is storing prices.

    The run checked the schema (0003) before the migration and stores its rows after
    it began: migration 0004 must sum them too, or statistics leave them out for good.
    """
    log_dir = tmp_path / "log"
    application = build_app(empty_database_url, log_dir)
    with application.app_context():
        upgrade(revision="0003")
        db.session.execute(insert(FinancialData), _days(1, 3, "10.00", "20.00", 100))
        db.session.commit()
        old_run = db.engine
        errors: list[BaseException] = []

        def start_a_new_replica() -> None:  # as scripts/prestart.py migrates
            try:
                with application.app_context():
                    migrate_unless_newer(db.engine, str(MIGRATIONS_DIR), upgrade_to_head)
            except BaseException as exc:  # noqa: B036 - reported by the test
                errors.append(exc)

        replica = threading.Thread(target=start_a_new_replica)
        with database_lock(old_run, RUN_LOCK, 1):
            replica.start()
            wait_for(lambda: not replica.is_alive()
                     or "the migration waits" in (log_dir / "api.log").read_text(),
                     "the migration to finish or wait for the run")
            # The old release's run stores February, without sums, and ends.
            db.session.execute(insert(FinancialData), _days(2, 2, "40.00", "50.00", 400))
            db.session.commit()
        replica.join(60)
        db.session.remove()
        assert not errors
        answer = application.test_client().get(
            "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-02-28").get_json()
        db.engine.dispose()
    assert answer["data"] == {"start_date": "2023-01-01", "end_date": "2023-02-28",
                              "symbol": "IBM", "average_daily_open_price": 22.0,
                              "average_daily_close_price": 32.0, "average_daily_volume": 220}


def test_a_current_schema_is_not_held_up_by_a_run(empty_database_url, tmp_path, caplog):
    """Every API start runs the migrations: on a current schema it never waits for a run."""
    caplog.set_level(logging.INFO, logger="lib.locks")
    application = build_app(empty_database_url, tmp_path / "log", FETCH_LOCK_TIMEOUT=0.0)
    with application.app_context():
        upgrade()
        with database_lock(db.engine, RUN_LOCK, 1):
            upgrade()  # with nothing to do, it does not ask for the run lock
            revision = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        db.session.remove()
        db.engine.dispose()
    assert revision == SCHEMA_REVISION
    assert [record.getMessage() for record in caplog.records if record.name == "lib.locks"] == []


def test_flask_db_upgrade_that_waited_out_a_run_says_so_in_one_line(
        empty_database_url, tmp_path):
    application = build_app(empty_database_url, tmp_path / "log", FETCH_LOCK_TIMEOUT=0.0)
    with application.app_context():
        upgrade(revision="0003")
        with database_lock(db.engine, RUN_LOCK, 1):
            result = application.test_cli_runner().invoke(args=["db", "upgrade"])
        assert result.exit_code == 1
        assert result.output.endswith(
            "Error: a fetch run still held the run lock after 0s (FETCH_LOCK_TIMEOUT); the "
            "schema is migrated between runs: run it again once the run has ended\n")
        upgrade()
        assert db.session.execute(text("SELECT version_num FROM alembic_version")).scalar() \
            == SCHEMA_REVISION
        db.session.remove()
        db.engine.dispose()


def test_a_rollback_below_0004_and_the_upgrade_after_it_keep_every_day(empty_database_url,
                                                                       tmp_path):
    """README's rollback: the newer release downgrades between runs; the old one stores
    days without sums; upgrading again sums them with the rest."""
    application = build_app(empty_database_url, tmp_path / "log", FETCH_LOCK_TIMEOUT=0.0)
    cli = application.test_cli_runner()
    with application.app_context():
        upgrade()
        db.session.execute(insert(FinancialData), _days(1, 3, "10.00", "20.00", 100))
        db.session.commit()
        with database_lock(db.engine, RUN_LOCK, 1):
            refused = cli.invoke(args=["db", "downgrade", "0003"])
        rolled_back = cli.invoke(args=["db", "downgrade", "0003"])
        db.session.execute(insert(FinancialData), _days(2, 2, "40.00", "50.00", 400))
        db.session.commit()
        db.session.remove()
        upgrade()
        answer = application.test_client().get(
            "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-02-28").get_json()
        db.engine.dispose()
    assert refused.exit_code == 1 and "a fetch run still held the run lock" in refused.output
    assert rolled_back.exit_code == 0, rolled_back.output
    assert answer["data"]["average_daily_open_price"] == 22.0
    assert answer["data"]["average_daily_volume"] == 220
