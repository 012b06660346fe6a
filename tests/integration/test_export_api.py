"""GET /api/financial_data/export through the test client, on every database backend."""
import csv
import datetime
import io
import logging
import re
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from app.api.export import EXPORT_BIND, EXPORTS_BUSY
from app.conditional import PRECONDITION_FAILED
from app.extensions import db
from conf.settings import PROJECT_ROOT
from tests.helpers import (
    LIST_ERROR, assert_error, build_app, dispose_engines, every_listed_row, insert_prices,
    insert_synthetic_rows,
)

EXPORT = "/api/financial_data/export"
ALL_FIELDS = ["symbol", "date", "open_price", "high_price", "low_price", "close_price",
              "adjusted_close_price", "volume", "dividend_amount", "split_coefficient"]


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))


def checked_out_connections(app) -> int:
    """Connections taken from the pools: the app's and, on MySQL, the export's."""
    with app.app_context():
        return sum(engine.pool.checkedout() for engine in db.engines.values())


@pytest.mark.mysql
def test_the_export_waits_longer_than_database_timeout_for_its_first_rows(
        mysql_database_url, tmp_path):
    """MySQL sorts every matching row before it sends one: a million take seconds."""
    application = build_app(mysql_database_url, tmp_path / "log", DATABASE_TIMEOUT=0.5,
                            DATABASE_READ_TIMEOUT=0.5)
    slow_answer = text("SELECT SLEEP(1)")
    with application.app_context():
        export_engine = db.engines[EXPORT_BIND]
        with export_engine.connect() as connection:
            assert connection.execute(slow_answer).scalar() == 0
        with pytest.raises(OperationalError), db.engine.connect() as connection:
            connection.execute(slow_answer)
    checkouts: list = []
    event.listen(export_engine, "checkout", lambda *_: checkouts.append(1))
    response = application.test_client().get(EXPORT)
    assert response.status_code == 200
    response.close()
    assert checkouts == [1], "the export read through its own engine"
    dispose_engines(application)


@pytest.mark.mysql
def test_the_server_waits_for_an_export_whose_client_pauses_reading(
        mysql_database_url, tmp_path):
    """The export takes its rows only as fast as its client reads the CSV: a server that
    gives up after its net_write_timeout (60 s by default) would cut the body short."""
    application = build_app(mysql_database_url, tmp_path / "log", EXPORT_CLIENT_PAUSE=4321)
    timeout = text("SELECT @@SESSION.net_write_timeout")
    with application.app_context():
        with db.engines[EXPORT_BIND].connect() as connection:
            assert connection.scalar(timeout) == 4321
        with db.engine.connect() as connection:
            assert connection.scalar(timeout) != 4321, "other statements keep the server's"
    dispose_engines(application)


def test_an_export_holds_one_connection_at_a_time(app, client, recorded_prices):
    """The request's session gives its connection back before the export takes its own."""
    held, most = [0], [0]

    def taken(*_):
        held[0] += 1
        most[0] = max(most[0], held[0])

    def given_back(*_):
        held[0] -= 1
    with app.app_context():
        for engine in db.engines.values():
            event.listen(engine, "checkout", taken)
            event.listen(engine, "checkin", given_back)
    assert client.get(f"{EXPORT}?fields=all").status_code == 200
    assert (held[0], most[0]) == (0, 1)


def test_export_is_a_csv_attachment_with_exact_values_and_empty_nulls(client, recorded_prices):
    response = client.get(f"{EXPORT}?fields=all&symbol=msft,IBM&start_date=2023-03-24"
                          "&end_date=2024-01-26")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="financial_data.csv"'
    assert response.headers["X-Row-Count"] == "3"
    assert response.get_data() == (
        b"symbol,date,open_price,high_price,low_price,close_price,adjusted_close_price,volume,"
        b"dividend_amount,split_coefficient\r\n"
        b"IBM,2023-03-24,123.36,125.40,122.88,125.29,125.29,3812644,0.00,1.0\r\n"
        b"MSFT,2023-03-24,277.24,,,280.57,,28199180,,\r\n"
        b"IBM,2024-01-26,191.31,192.3896,186.16,187.42,,9895941,,\r\n")


def test_export_holds_every_listed_row_in_the_same_order_and_values(client, recorded_prices):
    query = "symbol=AAPL,ibm,MSFT,aapl&fields=all"
    rows = csv_rows(client.get(f"{EXPORT}?{query}"))
    listed = every_listed_row(client, query)
    assert len(listed) == 301
    assert rows[0] == ALL_FIELDS
    assert rows[1:] == [["" if value is None else value for value in row.values()]
                        for row in listed]


def test_export_defaults_to_the_original_five_fields(client, recorded_prices):
    response = client.get(f"{EXPORT}?symbol=IBM&start_date=2023-02-09&end_date=2023-02-09")
    assert response.get_data() == (b"symbol,date,open_price,close_price,volume\r\n"
                                   b"IBM,2023-02-09,134.99,133.75,3918817\r\n")


def test_export_fields_come_in_the_contract_order(client, recorded_prices):
    response = client.get(f"{EXPORT}?symbol=AAPL&start_date=2022-12-23&end_date=2022-12-23"
                          "&fields=split_coefficient,dividend_amount,date,dividend_amount")
    assert csv_rows(response) == [["date", "dividend_amount", "split_coefficient"],
                                  ["2022-12-23", "0.1667", "1.0"]]


def test_export_of_nothing_is_the_header_alone(client, recorded_prices):
    response = client.get(f"{EXPORT}?symbol=NOPE")
    assert response.status_code == 200
    assert response.get_data() == b"symbol,date,open_price,close_price,volume\r\n"


def test_export_streams_the_rows_in_several_chunks(app, client, caplog):
    with app.app_context():
        insert_synthetic_rows(db.session, 5000)
    response = client.get(f"{EXPORT}?fields=all")
    chunks = [chunk for chunk in response.response if chunk]
    assert len(chunks) > 3
    lines = b"".join(chunks).split(b"\r\n")
    assert len(lines) == 5002 and lines[-1] == b""
    assert lines[1] == b"S000,2000-01-03,100.1234,110.50,90.25,105.0001,104.9876,123456789,0.00,1.0"
    # Every row whole, whichever chunk it ends up in (the synthetic rows, in date, symbol order).
    assert lines[1:-1] == [
        f"S{n % 100:03d},{datetime.date(2000, 1, 3) + datetime.timedelta(days=n // 100)},"
        f"100.1234,110.50,90.25,105.0001,104.9876,{123456789 + n},0.00,1.0".encode()
        for n in range(5000)]
    assert checked_out_connections(app) == 0
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_export_of_exactly_the_most_rows_allowed_is_served(app, client, recorded_prices):
    app.config["EXPORT_MAX_ROWS"] = 100
    response = client.get(f"{EXPORT}?symbol=AAPL")
    assert response.status_code == 200
    assert len(csv_rows(response)) == 101


def test_export_of_more_rows_than_allowed_is_refused_before_any_byte(
        app, client, recorded_prices, caplog):
    app.config["EXPORT_MAX_ROWS"] = 300
    response = client.get(f"{EXPORT}?fields=all")
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "data": [], "pagination": None,
        "info": {"error": "the export matches 301 rows, more than the 300 it may stream; "
                          "narrow the filters (symbol, start_date, end_date)"}}
    assert checked_out_connections(app) == 0
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert client.get(f"{EXPORT}?symbol=IBM,MSFT").status_code == 200
    assert client.get(f"{EXPORT}?start_date=2023-03-01").status_code == 200
    assert client.get(f"{EXPORT}?end_date=2022-12-31").status_code == 200


def test_a_star_gets_a_304_only_for_an_export_within_the_cap(app, client, recorded_prices):
    star = {"If-None-Match": "*"}
    app.config["EXPORT_MAX_ROWS"] = 300
    over = client.get(f"{EXPORT}?fields=all", headers=star)
    assert (over.status_code, over.get_json()) == (400, {
        "data": [], "pagination": None,
        "info": {"error": "the export matches 301 rows, more than the 300 it may stream; "
                          "narrow the filters (symbol, start_date, end_date)"}})
    assert "ETag" not in over.headers
    within = client.get(f"{EXPORT}?symbol=IBM", headers=star)
    assert (within.status_code, within.data) == (304, b"")
    assert within.headers["ETag"] == client.get(f"{EXPORT}?symbol=IBM").headers["ETag"]
    assert checked_out_connections(app) == 0


def test_if_match_passes_only_with_a_star_for_an_export_within_the_cap(
        app, client, recorded_prices):
    """RFC 9110: If-Match compares strongly (no weak tag passes) and only what would be a 2xx."""
    tag = client.get(f"{EXPORT}?symbol=IBM").headers["ETag"]
    for header in ('"other"', tag):
        failed = client.get(f"{EXPORT}?symbol=IBM", headers={"If-Match": header})
        assert (failed.status_code, failed.get_json()) == (412, {
            "data": [], "pagination": None, "info": {"error": PRECONDITION_FAILED}})
    star = client.get(f"{EXPORT}?symbol=IBM", headers={"If-Match": "*"})
    assert (star.status_code, star.headers["ETag"]) == (200, tag)
    assert star.get_data().startswith(b"symbol,date,")
    app.config["EXPORT_MAX_ROWS"] = 300
    for header in ('"other"', "*"):
        over = client.get(f"{EXPORT}?fields=all", headers={"If-Match": header})
        assert over.status_code == 400
    assert checked_out_connections(app) == 0


def test_head_sends_the_headers_of_get_without_querying_the_rows(app, client, recorded_prices):
    """The count alone: the rows query would sort every matching row for nothing."""
    get = client.get(f"{EXPORT}?fields=all")
    get.close()
    statements = []

    def executed(_connection, _cursor, statement, *_):
        statements.append(statement)
    with app.app_context():
        for engine in db.engines.values():
            event.listen(engine, "before_cursor_execute", executed)
    response = client.head(f"{EXPORT}?fields=all")
    assert (response.status_code, response.get_data()) == (200, b"")
    for header in ("Content-Type", "Content-Disposition", "X-Row-Count", "ETag",
                   "Cache-Control"):
        assert response.headers[header] == get.headers[header], header
    assert "Content-Length" not in response.headers, "the GET streams, without one"
    assert any("count(" in statement for statement in statements)
    assert not [statement for statement in statements if "ORDER BY financial_data" in statement]
    response.close()
    assert checked_out_connections(app) == 0


def test_every_answer_counts_the_rows_once_through_the_engine_of_the_export(
        app, client, recorded_prices):
    """On MySQL the request's session waits DATABASE_READ_TIMEOUT; the export's engine longer.

    A count of a large table that only the export's engine waits for must
    not turn a HEAD or a precondition into a 503 where the GET succeeds.
    """
    counted_on: list[bool] = []
    with app.app_context():
        export_engine = db.engines.get(EXPORT_BIND, db.engine)  # SQLite's export has none

        def executed(connection, _cursor, statement, *_):
            if "count(" in statement:
                counted_on.append(connection.engine is export_engine)
        for engine in db.engines.values():
            event.listen(engine, "before_cursor_execute", executed)
    tag = client.head(f"{EXPORT}?symbol=IBM").headers["ETag"]
    for method, headers, status in [
            ("HEAD", {}, 200), ("GET", {}, 200), ("GET", {"If-Match": "*"}, 200),
            ("HEAD", {"If-Match": "*"}, 200), ("GET", {"If-None-Match": "*"}, 304),
            ("HEAD", {"If-Match": '"other"'}, 412),
            ("GET", {"If-Match": "*", "If-None-Match": tag}, 304)]:
        counted_on.clear()
        response = client.open(f"{EXPORT}?symbol=IBM", method=method, headers=headers)
        assert response.status_code == status, (method, headers)
        response.close()
        assert counted_on == [True], (method, headers)
    counted_on.clear()
    assert client.get(f"{EXPORT}?symbol=IBM", headers={"If-None-Match": tag}).status_code == 304
    assert counted_on == [], "a tag alone needs no count"
    assert checked_out_connections(app) == 0


def test_head_of_an_export_over_the_cap_is_the_400(app, client, recorded_prices):
    app.config["EXPORT_MAX_ROWS"] = 300
    response = client.head(f"{EXPORT}?fields=all")
    assert (response.status_code, response.headers["Content-Type"]) == (400, "application/json")


def test_a_client_that_stops_reading_frees_the_connection_and_is_logged(app, client, caplog):
    with app.app_context():
        insert_synthetic_rows(db.session, 5000)
    response = client.get(f"{EXPORT}?fields=all")
    chunks = iter(response.response)
    first = next(chunks)
    assert first.startswith(b"symbol,date,")
    response.close()
    assert checked_out_connections(app) == 0
    sent = first.count(b"\r\n") - 1  # the rows of the one chunk read, not its header
    assert (f"CSV export stopped after {sent} rows: the client stopped reading "
            f"request_id={response.headers['X-Request-ID']}") in caplog.messages
    assert client.get(f"{EXPORT}?symbol=S001&start_date=2000-01-03&end_date=2000-01-03"
                      ).get_data().count(b"\r\n") == 2, "the pool's connections still work"


def test_successful_exports_may_be_cached_by_clients(sqlite_client):
    response = sqlite_client.get(EXPORT)
    assert response.headers["Cache-Control"] == "public, max-age=60"


def test_exports_past_export_concurrency_are_refused_at_once(app, client, recorded_prices,
                                                             caplog):
    """An export holds a worker's thread for as long as it streams (a million rows: seconds to
    a minute): a few clients' exports would take every thread and leave the rest waiting."""
    slots = app.config["EXPORT_CONCURRENCY"]
    streaming = [client.get(f"{EXPORT}?fields=all") for _ in range(slots)]
    try:
        assert [response.status_code for response in streaming] == [200] * slots
        refused = client.get(EXPORT)
        assert_error(refused, 503, EXPORTS_BUSY, LIST_ERROR)
        assert refused.headers["Retry-After"] == "5"
        assert not [record for record in caplog.records if record.levelno >= logging.WARNING], (
            "a refusal is no error of the server: the request's line says 503")
        assert client.get("/api/financial_data?symbol=IBM").status_code == 200
        assert client.head(EXPORT).status_code == 200, "HEAD only counts: it streams nothing"
        streaming.pop().close()
        assert len(csv_rows(client.get(f"{EXPORT}?symbol=IBM"))) > 1, "a freed slot is taken"
    finally:
        for response in streaming:
            response.close()
    assert checked_out_connections(app) == 0


def test_scripts_on_other_origins_may_read_the_exports_file_name(sqlite_client):
    """A page on another origin that saves the export needs the name Content-Disposition gives."""
    response = sqlite_client.get(EXPORT, headers={"Origin": "https://any.example"})
    assert response.get_data(as_text=True).startswith("symbol,date,")
    assert response.headers["Content-Disposition"] == 'attachment; filename="financial_data.csv"'
    exposed = response.headers["Access-Control-Expose-Headers"].split(", ")
    assert "Content-Disposition" in exposed


def readme_pandas_reads() -> str:
    """The README's code reading the export with pandas: "From Python" from ``export =``."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("### From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    return block[block.index("\nexport = "):]


def test_the_readmes_pandas_reads_of_the_export_keep_every_stored_value(client, tmp_path):
    """Tickers such as NA and NULL are what pandas reads as missing unless told otherwise."""
    with client.application.app_context():
        insert_prices(db.session, [
            {"symbol": symbol, "date": datetime.date(2023, 3, 24), "open_price": Decimal("10.10"),
             "close_price": Decimal("10.20"), "volume": 7}
            for symbol in ("IBM", "NA", "NULL")])
        db.session.commit()
    body = client.get(f"{EXPORT}?fields=all").get_data()
    saved = tmp_path / "financial_data.csv"
    saved.write_bytes(body)
    code = re.sub(r'^export = "[^"]*"', f"export = {str(saved)!r}", readme_pandas_reads(),
                  flags=re.MULTILINE)
    names: dict = {"pd": pd}
    exec(code, names)  # noqa: S102 - the README's own example, run as a reader would
    assert list(names["frame"]["symbol"]) == ["IBM", "NA", "NULL"]
    assert list(names["frame"]["open_price"]) == [10.1] * 3
    assert names["frame"]["high_price"].isna().all()
    exact = names["exact"]
    assert list(exact["symbol"]) == ["IBM", "NA", "NULL"]
    assert list(exact["open_price"]) == ["10.10"] * 3
    assert exact["split_coefficient"].isna().all(), "a null is still missing"


def test_the_readmes_pandas_read_of_the_export_keeps_tickers_that_look_like_numbers(
        client, tmp_path):
    with client.application.app_context():
        insert_prices(db.session, [
            {"symbol": symbol, "date": datetime.date(2023, 3, 24), "open_price": Decimal("10.10"),
             "close_price": Decimal("10.20"), "volume": 7}
            for symbol in ("0700", "7203", "IBM")])
        db.session.commit()
    saved = tmp_path / "financial_data.csv"
    saved.write_bytes(client.get(f"{EXPORT}?symbol=7203,0700").get_data())
    code = re.sub(r'^export = "[^"]*"', f"export = {str(saved)!r}", readme_pandas_reads(),
                  flags=re.MULTILINE)
    names: dict = {"pd": pd}
    exec(code, names)  # noqa: S102 - the README's own example, run as a reader would
    assert list(names["frame"]["symbol"]) == ["0700", "7203"]
    assert list(names["exact"]["symbol"]) == ["0700", "7203"]
