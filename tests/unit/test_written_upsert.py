"""The MariaDB upsert with its values written out: the text PyMySQL's executemany sends."""
import datetime
import decimal
from decimal import Decimal

import pymysql
import pytest
from pymysql.constants import SERVER_STATUS
from sqlalchemy.dialects.mysql import pymysql as mysql_pymysql

from financial.ingest import KEPT_WHEN_MISSING, ROW_COLUMNS
from financial.models import FinancialData
from lib.storage import RowCodec, _upsert_sql, written_statement

CODEC = RowCodec(mysql_pymysql.dialect(), FinancialData.__table__, tuple(ROW_COLUMNS))
SQL, _ = _upsert_sql(CODEC, frozenset({"symbol", "date"}), frozenset(KEPT_WHEN_MISSING))
DAY = datetime.date(2023, 3, 24)


class SendingNothing(pymysql.cursors.Cursor):
    """A PyMySQL cursor that keeps the statements it would send."""

    def __init__(self, connection) -> None:
        super().__init__(connection)
        self.sent: list[str] = []

    def execute(self, query, args=None):
        self.sent.append(self.mogrify(query, args).decode() if isinstance(query, bytes | bytearray)
                         else self.mogrify(query, args))
        return 0


def pymysql_cursor(no_backslash_escapes: bool = False) -> SendingNothing:
    connection = pymysql.connect(defer_connect=True, ssl_disabled=True)
    # What the server says as the connection is made: how it reads a backslash in a string.
    connection.server_status = (SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
                                if no_backslash_escapes else 0)
    return SendingNothing(connection)


def day_of(**changes) -> tuple:
    values = {"symbol": "IBM", "date": DAY, "open_price": Decimal("137.95"),
              "high_price": Decimal("138.9"), "low_price": Decimal("136.94"),
              "close_price": Decimal("137.39"), "adjusted_close_price": Decimal("135.7157"),
              "volume": 4720007, "dividend_amount": Decimal("1.6500"),
              "split_coefficient": Decimal("0.33333333"), **changes}
    return tuple(values[name] for name in CODEC.columns)


@pytest.mark.parametrize("rows", [
    [day_of(), day_of(date=datetime.date(1, 1, 1), open_price=Decimal("1E+2"),
                      low_price=Decimal("0E-8"), volume=0)],
    # TIME_SERIES_DAILY leaves the adjusted values out; old rows may lack high and low.
    [day_of(adjusted_close_price=None, dividend_amount=None, split_coefficient=None),
     day_of(adjusted_close_price=None, dividend_amount=None, split_coefficient=None)],
    [day_of(high_price=None, low_price=None), day_of()],
    # Negative and huge values: the database refuses them, after reading the same text.
    [day_of(open_price=Decimal("-0.0001"), close_price=Decimal("-12345678901234567890.123"),
            volume=-1), day_of(volume=10**30, split_coefficient=Decimal("-0"))],
    # Types PyMySQL writes its own way: a bool, a datetime, a float, a NaN (refused).
    [day_of(volume=True, date=datetime.datetime(2023, 3, 24, 9, 30), open_price=1.5)],
    [day_of(symbol="O'NEIL\\"), day_of(symbol=None), day_of(symbol="BRK.B")],
])
@pytest.mark.parametrize("no_backslash_escapes", [False, True])
def test_the_statement_is_the_one_pymysql_sends(rows, no_backslash_escapes):
    pymysql_sends = pymysql_cursor(no_backslash_escapes)
    pymysql_sends.executemany(SQL, rows)
    assert [written_statement(pymysql_cursor(no_backslash_escapes), SQL, rows)] == \
        pymysql_sends.sent


@pytest.mark.parametrize("value", ["1E-7", "0.0000001", "1E+2", "-0", "0E-8", "12.3400"])
def test_a_decimal_is_written_as_pymysql_writes_it_whatever_the_context(value):
    rows = [day_of(), day_of(open_price=Decimal(value), split_coefficient=Decimal(value))]
    with decimal.localcontext(capitals=0):
        pymysql_sends = pymysql_cursor()
        pymysql_sends.executemany(SQL, rows)
        assert [written_statement(pymysql_cursor(), SQL, rows)] == pymysql_sends.sent


def test_a_value_pymysql_refuses_is_refused_alike():
    rows = [day_of(open_price=Decimal("NaN"))]
    with pytest.raises(pymysql.ProgrammingError) as pymysql_refusal:
        pymysql_cursor().executemany(SQL, rows)
    with pytest.raises(pymysql.ProgrammingError) as refusal:
        written_statement(pymysql_cursor(), SQL, rows)
    assert str(refusal.value) == str(pymysql_refusal.value)


def test_a_percent_sign_in_the_statement_is_written_as_pymysql_reads_it():
    sql = ("INSERT INTO `100%%_prices` (symbol, `share%%`) VALUES (%s, %s) "
           "ON DUPLICATE KEY UPDATE `share%%` = VALUES(`share%%`)")
    rows = [("IBM", Decimal("1.5")), ("AAPL", Decimal("2.25"))]
    pymysql_sends = pymysql_cursor()
    pymysql_sends.executemany(sql, rows)
    assert [written_statement(pymysql_cursor(), sql, rows)] == pymysql_sends.sent


@pytest.mark.parametrize("sql", [
    "INSERT INTO prices (symbol, volume) VALUES %s, %s) ON DUPLICATE KEY UPDATE volume = 1",
    "INSERT INTO prices (symbol, volume) VALUES (%s, 1) ON DUPLICATE KEY UPDATE volume = 1",
    "INSERT INTO prices (symbol, volume) VALUES (%s,%s) ON DUPLICATE KEY UPDATE volume = 1",
    "INSERT INTO prices (symbol, volume) VALUES (%s, %s",
    "INSERT INTO prices (symbol, volume) SELECT %s, %s",
])
def test_values_other_than_one_row_of_placeholders_are_refused(sql):
    """Only a "(%s, %s, ...)" row is rebuilt as PyMySQL writes it: any other is not guessed at."""
    with pytest.raises(NotImplementedError):
        written_statement(pymysql_cursor(), sql, [("IBM", 1), ("AAPL", 2)])
