"""SQLite and MariaDB/MySQL answer every request identically for the same data."""
import datetime
import random
from decimal import Decimal

import pytest

from app.extensions import db
from tests.helpers import insert_prices

FIRST_DAY = datetime.date(2023, 1, 2)


def random_rows(seed: int) -> list[dict]:
    """Three symbols x 60 days; prices with 4 decimals, many ending in 5 (rounding edges).

    The columns that may be null are, on about one day in four.
    """
    rng = random.Random(seed)

    def maybe(value: Decimal) -> Decimal | None:
        return None if rng.random() < 0.25 else value

    return [{"symbol": symbol, "date": FIRST_DAY + datetime.timedelta(days=day),
             "open_price": Decimal(rng.randrange(1, 10**7)).scaleb(-4),
             "high_price": maybe(Decimal(rng.randrange(10**7, 10**8)).scaleb(-4)),
             "low_price": maybe(Decimal(rng.randrange(0, 10**4)).scaleb(-4)),
             "close_price": Decimal(rng.randrange(1, 2000) * 10 + 5).scaleb(-4),
             "adjusted_close_price": maybe(Decimal(rng.randrange(1, 10**7)).scaleb(-4)),
             "volume": rng.randrange(0, 10**12),
             "dividend_amount": maybe(Decimal(rng.randrange(0, 10**4)).scaleb(-4)),
             "split_coefficient": maybe(Decimal(rng.randrange(1, 10**9)).scaleb(-8))}
            for symbol in ("AAPL", "BRK.B", "IBM") for day in range(60)]


def requests_to_compare(seed: int) -> list[str]:
    rng = random.Random(seed)
    urls = [f"/api/financial_data?limit=7&page={page}" for page in range(1, 28)]
    for _ in range(25):
        start = FIRST_DAY + datetime.timedelta(days=rng.randrange(60))
        end = start + datetime.timedelta(days=rng.randrange(30))
        symbol = rng.choice(["ibm", "AAPL", "brk.b", "MSFT"])
        urls.append(f"/api/statistics?symbol={symbol}&start_date={start}&end_date={end}")
        urls.append(f"/api/financial_data?symbol={symbol}&start_date={start}&end_date={end}"
                    f"&limit=10")
        symbols = ",".join(rng.sample(["ibm", "AAPL", "brk.b", "MSFT", "IBM"], 3))
        urls.append(f"/api/financial_data?symbol={symbols}&start_date={start}&fields=all"
                    f"&limit=20")
        urls.append(f"/api/financial_data/export?symbol={symbols}&end_date={end}&fields=all")
    return urls


@pytest.mark.mysql
def test_every_answer_is_the_same_on_both_backends(mysql_app, sqlite_app):
    rows = random_rows(seed=11)
    for application in (mysql_app, sqlite_app):
        with application.app_context():
            insert_prices(db.session, rows)
            db.session.commit()
    mysql_client, sqlite_client = mysql_app.test_client(), sqlite_app.test_client()
    for url in requests_to_compare(seed=5):
        on_mysql, on_sqlite = mysql_client.get(url), sqlite_client.get(url)
        assert on_mysql.status_code == on_sqlite.status_code, url
        assert on_mysql.get_data() == on_sqlite.get_data(), url
