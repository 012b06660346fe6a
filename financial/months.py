"""Calendar months as ``monthly_price_sums`` keys them: YYYYMM numbers, and their days."""
import calendar
import datetime
from dataclasses import dataclass

Days = tuple[datetime.date, datetime.date]


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


@dataclass(frozen=True)
class RangeMonths:
    """An inclusive date range in three parts: a partial first month, whole months, a partial last.

    Each day of the range is in exactly one part. ``first_month`` and
    ``last_month`` are the YYYYMM of the first and last whole month: an open
    start is before every month, an open end None. ``head`` and ``tail`` are
    the first and last day of the partial months, None where the range starts
    on a month's first day (or is open) or ends on a month's last day (or is
    open). A range without a whole month has the first after the last, and
    all its days are the head.
    """

    first_month: int
    last_month: int | None
    head: Days | None
    tail: Days | None

    @property
    def has_whole_months(self) -> bool:
        return self.last_month is None or self.first_month <= self.last_month


def split_range(start: datetime.date | None, end: datetime.date | None) -> RangeMonths:
    """Split [start, end] into its whole months and the days before and after them.

    Statistics, counts and deep pages all split a range here, so that they agree.
    """
    first = 0 if start is None else month_index(start) + (start.day != 1)
    if end is None:
        last = None
    else:
        last = month_index(end) - (end != last_day_of_month(end))
        if start is not None and first > last:  # no whole month; an open start has them all
            return RangeMonths(month_number(first), month_number(last), (start, end), None)
    head = None if start is None or start.day == 1 else (start, last_day_of_month(start))
    tail = None if end is None or end == last_day_of_month(end) else (end.replace(day=1), end)
    return RangeMonths(month_number(first), None if last is None else month_number(last),
                       head, tail)
