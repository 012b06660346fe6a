"""split_range: the one split of a date range that statistics, counts and deep pages share."""
import datetime

import pytest

from financial.months import first_day, last_day_of_month, split_range

D = datetime.date
EDGES = [D(2023, 1, 1), D(2023, 1, 2), D(2023, 1, 31), D(2023, 2, 1), D(2023, 2, 15),
         D(2023, 2, 28), D(2023, 3, 1), D(2023, 3, 31), D(2023, 4, 10), D(2024, 2, 28),
         D(2024, 2, 29)]
OLDEST, NEWEST = D(2022, 12, 1), D(2024, 3, 31)


def days(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    return [first + datetime.timedelta(days=n) for n in range((last - first).days + 1)]


def split_days(start, end) -> list[datetime.date]:
    """The days of OLDEST..NEWEST in the head, the whole months and the tail, in that order."""
    parts = split_range(start, end)
    whole = []
    if parts.has_whole_months:
        month = max(first_day(max(parts.first_month, OLDEST.year * 100 + 1)), OLDEST)
        while month <= NEWEST and (parts.last_month is None
                                   or month.year * 100 + month.month <= parts.last_month):
            whole += days(month, last_day_of_month(month))
            month = last_day_of_month(month) + datetime.timedelta(days=1)
    head = days(*parts.head) if parts.head else []
    tail = days(*parts.tail) if parts.tail else []
    return head + whole + tail


# Every pair of edges or open ends, but a start after the end: the API refuses
# that range (app/api/params.py), so it never reaches split_range.
RANGES = [(start, end) for start in [None, *EDGES] for end in [None, *EDGES]
          if start is None or end is None or start <= end]


@pytest.mark.parametrize("start, end", RANGES)
def test_every_day_of_the_range_is_in_exactly_one_part_in_order(start, end):
    expected = days(start or OLDEST, end or NEWEST)
    assert split_days(start, end) == expected


@pytest.mark.parametrize("start, end, first, last, head, tail", [
    (D(2023, 1, 15), D(2023, 4, 10), 202302, 202303,
     (D(2023, 1, 15), D(2023, 1, 31)), (D(2023, 4, 1), D(2023, 4, 10))),
    (D(2023, 1, 1), D(2023, 3, 31), 202301, 202303, None, None),
    (None, D(2023, 3, 31), 1, 202303, None, None),
    (D(2023, 1, 2), None, 202302, None, (D(2023, 1, 2), D(2023, 1, 31)), None),
])
def test_whole_months_are_their_yyyymm_and_the_partial_months_their_days(
        start, end, first, last, head, tail):
    parts = split_range(start, end)
    assert (parts.first_month, parts.last_month, parts.head, parts.tail) == (
        first, last, head, tail)
    assert parts.has_whole_months


@pytest.mark.parametrize("start, end", [(D(2023, 1, 5), D(2023, 1, 20)),
                                        (D(2023, 1, 5), D(2023, 2, 10)),
                                        (D(2023, 1, 2), D(2023, 1, 30))])
def test_a_range_without_a_whole_month_is_all_head(start, end):
    parts = split_range(start, end)
    assert not parts.has_whole_months
    assert parts.first_month > parts.last_month
    assert (parts.head, parts.tail) == ((start, end), None)
