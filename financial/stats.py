"""Statistics over stored prices: exact averages from SQL sums."""
import datetime
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from financial.errors import NoDataError
from financial.models import FinancialData
from financial.queries import price_filters

PRICE_PLACES = Decimal("0.01")
WHOLE = Decimal("1")
# Sums of DECIMAL(18,4) over any realistic row count fit easily in 60 digits.
AVERAGE_PRECISION = 60


@dataclass(frozen=True)
class PriceStatistics:
    """Averages over the stored trading days of a range, already rounded."""

    average_daily_open_price: Decimal
    average_daily_close_price: Decimal
    average_daily_volume: int


def compute_statistics(
    session: Session, symbol: str, start_date: datetime.date, end_date: datetime.date
) -> PriceStatistics:
    """Average open, close and volume of ``symbol`` over the inclusive range.

    SQL returns exact sums and the row count; the division happens here in
    decimal arithmetic, because SQL AVG is a float on SQLite and truncated
    to a few decimals on MySQL, either of which can flip a rounding at .xx5.
    Raises NoDataError when no day in the range is stored.
    """
    days, open_sum, close_sum, volume_sum = session.execute(
        select(
            func.count(),
            func.sum(FinancialData.open_price),
            func.sum(FinancialData.close_price),
            func.sum(FinancialData.volume),
        ).where(*price_filters((symbol,), start_date, end_date))
    ).one()
    if not days:
        raise NoDataError(
            f"no data for symbol {symbol} between {start_date.isoformat()} "
            f"and {end_date.isoformat()}"
        )
    return PriceStatistics(
        average_daily_open_price=_average(open_sum, days, PRICE_PLACES),
        average_daily_close_price=_average(close_sum, days, PRICE_PLACES),
        average_daily_volume=int(_average(volume_sum, days, WHOLE)),
    )


def _average(total, count: int, places: Decimal) -> Decimal:
    """Return total / count rounded half away from zero to ``places``."""
    with localcontext() as context:
        context.prec = AVERAGE_PRECISION
        return (Decimal(total) / count).quantize(places, rounding=ROUND_HALF_UP)
