"""Calendar months as ``monthly_price_sums`` keys them: YYYYMM numbers, and their days."""
import calendar
import datetime


def month_index(day: datetime.date) -> int:
    """Return the number of months from year 0 to ``day``'s: consecutive months differ by 1."""
    return day.year * 12 + day.month - 1


def month_number(index: int) -> int:
    """Return the YYYYMM of a month index, the key of ``monthly_price_sums``."""
    return index // 12 * 100 + index % 12 + 1


def first_day(number: int) -> datetime.date:
    """Return the first day of the month numbered YYYYMM."""
    return datetime.date(number // 100, number % 100, 1)


def last_day_of_month(day: datetime.date) -> datetime.date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def whole_months(start: datetime.date | None,
                 end: datetime.date | None) -> tuple[int, int | None]:
    """Return the month indexes of the first and last whole month of [start, end].

    An open start is month 0, an open end None. A range without a whole month
    has the first after the last.
    """
    first = 0 if start is None else month_index(start) + (start.day != 1)
    last = None if end is None else month_index(end) - (end != last_day_of_month(end))
    return first, last
