"""SQLAlchemy mappings of the financial data tables."""
import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, Index, MetaData, String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lib.db import ScaledDecimal

# Stable constraint names, so migrations read the same on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

VOLUME_TYPE = BigInteger().with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")


class Base(DeclarativeBase):
    """Declarative base shared by the models, Flask-SQLAlchemy and Alembic."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FinancialData(Base):
    """One trading day of one symbol: open, close and volume.

    (symbol, date) is the primary key: it makes re-fetching idempotent and
    serves every lookup by symbol and date range. The (date, symbol) index
    serves listings across all symbols in their order, without a sort.
    """

    __tablename__ = "financial_data"
    __table_args__ = (Index("ix_financial_data_date_symbol", "date", "symbol"),)

    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    date: Mapped[datetime.date] = mapped_column(Date, primary_key=True)
    open_price: Mapped[Decimal] = mapped_column(ScaledDecimal(18, 4), nullable=False)
    close_price: Mapped[Decimal] = mapped_column(ScaledDecimal(18, 4), nullable=False)
    volume: Mapped[int] = mapped_column(VOLUME_TYPE, nullable=False)
