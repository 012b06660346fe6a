"""Each answer is read from one state of the database, even while the fetch job commits."""
import datetime
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.extensions import db
from tests.helpers import insert_prices

D = datetime.date
# A MySQL/MariaDB server may be configured so (transaction_isolation): each
# statement would then see the latest commits, and a page its own count.
READ_COMMITTED = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"


@pytest.fixture(scope="session", params=[
    "sqlite", pytest.param("mysql", marks=pytest.mark.mysql),
    pytest.param("mysql-read-committed", marks=pytest.mark.mysql)])
def database_url(request) -> str:
    """Each backend, and a MariaDB/MySQL server whose sessions start in READ COMMITTED."""
    if request.param != "mysql-read-committed":
        return request.getfixturevalue(f"{request.param}_database_url")
    url = make_url(request.getfixturevalue("mysql_database_url"))
    return url.update_query_dict({"init_command": READ_COMMITTED}).render_as_string(
        hide_password=False)


def ibm_day(day: int) -> dict:
    return {"symbol": "IBM", "date": D(2023, 1, day), "open_price": Decimal("10"),
            "close_price": Decimal("11"), "volume": 100}


@pytest.fixture
def commit_before(app) -> Iterator[Callable[[str, list[dict]], None]]:
    """Let another connection (the fetch job) commit rows just before a statement of the app's.

    ``commit_before(marker, records)``: once, right before the app runs the first
    statement containing ``marker``, the records are committed on a connection
    of their own.
    """
    writer = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with app.app_context():
        engines = list(db.engines.values())  # the export reads through a bind of its own
    pending: list[tuple[str, list[dict]]] = []

    def interleave(_conn, _cursor, statement, _params, _context, _executemany):
        if pending and pending[0][0] in statement:
            records = pending.pop(0)[1]
            with Session(writer) as session:
                insert_prices(session, records)
                session.commit()

    for engine in engines:
        event.listen(engine, "before_cursor_execute", interleave)
    yield lambda marker, records: pending.append((marker, records))
    for engine in engines:
        event.remove(engine, "before_cursor_execute", interleave)
    writer.dispose()
    assert pending == [], "the other connection never committed: the test tested nothing"


def test_a_page_and_its_count_come_from_one_state_of_the_table(app, store_prices,
                                                               commit_before):
    store_prices([ibm_day(day) for day in range(2, 6)])
    # The count is read first; the fetch job commits a fifth day before the page is read.
    commit_before(" LIMIT ", [ibm_day(1)])
    body = app.test_client().get("/api/financial_data?symbol=IBM&limit=10").get_json()
    assert body["pagination"] == {"count": 4, "page": 1, "limit": 10, "pages": 1}
    assert [row["date"] for row in body["data"]] == [f"2023-01-0{day}" for day in range(2, 6)]


def test_an_export_streams_the_rows_it_counted_against_the_cap(app, store_prices,
                                                               commit_before):
    app.config["EXPORT_MAX_ROWS"] = 4
    store_prices([ibm_day(day) for day in range(2, 6)])
    # The cap is checked on the count; a fifth day lands before the rows are read.
    commit_before("ORDER BY financial_data.date", [ibm_day(1)])
    response = app.test_client().get("/api/financial_data/export?symbol=IBM")
    assert response.status_code == 200
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "symbol,date,open_price,close_price,volume"
    assert [line.split(",")[1] for line in lines[1:]] == [f"2023-01-0{day}" for day in range(2, 6)]
