"""SQLAlchemy mappings of the financial data tables and the fetch job's run history."""
import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, MetaData, String,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lib.storage import ScaledDecimal

# Stable constraint names, so migrations read the same on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

VOLUME_TYPE = BigInteger().with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")


class Base(DeclarativeBase):
    """Declarative base shared by the models, Flask-SQLAlchemy and Alembic."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FinancialData(Base):
    """One trading day of one symbol: prices, volume, dividend and split.

    (symbol, date) is the primary key: it makes re-fetching idempotent and
    serves every lookup by symbol and date range. The (date, symbol) index
    serves listings across all symbols in their order, without a sort.
    High and low are null only in rows stored before they were fetched; the
    adjusted close, dividend and split coefficient only where no
    TIME_SERIES_DAILY_ADJUSTED answer was ever stored.
    """

    __tablename__ = "financial_data"
    __table_args__ = (Index("ix_financial_data_date_symbol", "date", "symbol"),)

    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    date: Mapped[datetime.date] = mapped_column(Date, primary_key=True)
    # lib/alphavantage/payload.py checks values against these: tests/unit/test_parser_bounds.py.
    open_price: Mapped[Decimal] = mapped_column(ScaledDecimal(18, 4), nullable=False)
    high_price: Mapped[Decimal | None] = mapped_column(ScaledDecimal(18, 4))
    low_price: Mapped[Decimal | None] = mapped_column(ScaledDecimal(18, 4))
    close_price: Mapped[Decimal] = mapped_column(ScaledDecimal(18, 4), nullable=False)
    adjusted_close_price: Mapped[Decimal | None] = mapped_column(ScaledDecimal(18, 4))
    volume: Mapped[int] = mapped_column(VOLUME_TYPE, nullable=False)
    dividend_amount: Mapped[Decimal | None] = mapped_column(ScaledDecimal(18, 4))
    split_coefficient: Mapped[Decimal | None] = mapped_column(ScaledDecimal(18, 8))


class MonthlyPriceSums(Base):
    """The stored days of one symbol in one calendar month, added up.

    Kept exactly equal to what ``financial_data`` holds for that month
    (``financial.monthly_sums.refresh_monthly_sums``, which the fetch job calls as it
    stores), so that statistics over a long range add up whole months here
    and read single days only for the partial months at its ends. ``month``
    is YYYYMM. Sums are exact: SQLite adds the scaled integers, MySQL decimals.
    """

    __tablename__ = "monthly_price_sums"

    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    month: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    days: Mapped[int] = mapped_column(Integer, nullable=False)
    open_sum: Mapped[Decimal] = mapped_column(ScaledDecimal(22, 4), nullable=False)
    close_sum: Mapped[Decimal] = mapped_column(ScaledDecimal(22, 4), nullable=False)
    volume_sum: Mapped[int] = mapped_column(VOLUME_TYPE, nullable=False)


# The run history's vocabularies (README: "The run history"): the check constraints
# below, the job, the API's enums and the metrics all take their words from here.
MANUAL, SCHEDULE = "manual", "schedule"  # the job run by hand or cron; --schedule
TRIGGERS = (MANUAL, SCHEDULE)
RUNNING, OK, PARTIAL, FAILED, INTERRUPTED = "running", "ok", "partial", "failed", "interrupted"
RUN_STATUSES = (RUNNING, OK, PARTIAL, FAILED, INTERRUPTED)
NOT_FETCHED = "not_fetched"
SYMBOL_STATUSES = (OK, FAILED, NOT_FETCHED)
MESSAGE_LENGTH = 500


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class FetchRun(Base):
    """One run of the fetch job: when, why, how it ended and what it stored.

    Times are UTC, naive, in whole seconds (alike on SQLite and MySQL).
    ``finished_at`` is null while the run is ``running``. The
    (started_at, id) index serves the history newest first.
    """

    __tablename__ = "fetch_runs"
    __table_args__ = (
        CheckConstraint(_one_of("`trigger`", TRIGGERS), name="trigger"),
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        Index("ix_fetch_runs_started_at_id", "started_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime.datetime] = mapped_column(DateTime, nullable=False)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    rows_new: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    message: Mapped[str | None] = mapped_column(String(MESSAGE_LENGTH))


class FetchRunSymbol(Base):
    """What one run did with one symbol: stored it, failed, or never got to it.

    The (symbol, run_id) index finds the newest run that tried a symbol.
    ``newest_date`` is the newest day stored; ``error`` is the one-line
    reason of a failure, never holding the API key.
    """

    __tablename__ = "fetch_run_symbols"
    __table_args__ = (
        CheckConstraint(_one_of("status", SYMBOL_STATUSES), name="status"),
        Index("ix_fetch_run_symbols_symbol_run_id", "symbol", "run_id"),
    )

    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("fetch_runs.id", ondelete="CASCADE"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    rows_fetched: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_new: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    newest_date: Mapped[datetime.date | None] = mapped_column(Date)
    error: Mapped[str | None] = mapped_column(String(MESSAGE_LENGTH))
