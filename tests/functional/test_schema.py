"""The migrated schema is the contract's table on every backend."""
import datetime
import re
from decimal import Decimal

import pytest
from sqlalchemy import insert, inspect
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from financial.models import FinancialData

CONTRACT_COLUMNS = {
    "mysql": {"symbol": "VARCHAR(16)", "date": "DATE", "open_price": "DECIMAL(18, 4)",
              "close_price": "DECIMAL(18, 4)", "volume": "BIGINT UNSIGNED"},
    # SQLite has no DECIMAL: prices are exact integer counts of 1/10000.
    "sqlite": {"symbol": "VARCHAR(16)", "date": "DATE", "open_price": "BIGINT",
               "close_price": "BIGINT", "volume": "BIGINT"},
}


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
    assert not any(column["nullable"] for column in columns.values())


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
