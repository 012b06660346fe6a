"""The CSV export of stored prices, streamed from a server-side cursor in constant memory.

Everything that can fail for a reason the client should read (the row cap,
an unreachable database, the query itself) happens before the first byte,
so it is still answered with the JSON envelope. Once rows flow the status
is sent: a failure then (or a server stopping) can only cut the body short,
which the client sees as an incomplete chunked response, and the log says
what happened. An HTTP/1.0 client gets no chunks, and the body is cut at a
row's end: the row count sent ahead (ROW_COUNT_HEADER) is how it can tell.
"""
import csv
import datetime
import hashlib
import io
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from flask import Flask, Response, current_app
from sqlalchemy import Connection, Engine, Result, Row
from sqlalchemy.orm import Session

from app.request_log import request_id
from financial.errors import InvalidParameterError
from financial.queries import count_prices, stream_prices
from financial.records import record_values

logger = logging.getLogger(__name__)

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
CONTENT_DISPOSITION = 'attachment; filename="financial_data.csv"'
# The number of rows the body holds (the header row aside), counted with them.
ROW_COUNT_HEADER = "X-Row-Count"
# Rows fetched from the cursor at a time, and the size of the chunks sent.
BATCH_ROWS = 1000
CHUNK_CHARS = 64 * 1024
# Part of the export's tag: change it when the CSV's layout changes.
EXPORT_FORMAT_VERSION = 1
# The Flask-SQLAlchemy bind the export reads through where the database has a
# read timeout (MySQL): the server sorts every matching row, a million in
# seconds, before it sends the first (EXPORT_READ_TIMEOUT in conf/settings.py).
EXPORT_BIND = "export"
# The app's semaphore of EXPORT_CONCURRENCY slots: exports this process streams at once.
_EXPORT_SLOTS = "export_slots"
EXPORTS_BUSY = ("this server is streaming as many CSV exports as it may at once; retry after "
                "the number of seconds in the Retry-After header")


@dataclass(frozen=True)
class ExportQuery:
    """What to export: the list's filters and fields, and the most rows allowed."""

    symbols: tuple[str, ...] | None
    start_date: datetime.date | None
    end_date: datetime.date | None
    fields: tuple[str, ...]
    max_rows: int


def export_tag(query: ExportQuery, data_version: str) -> str:
    """Return the export's entity tag: a digest of the query and the data version."""
    identity = repr((EXPORT_FORMAT_VERSION, query, data_version)).encode("utf-8")
    return hashlib.sha256(identity).hexdigest()[:32]


def init_export_slots(app: Flask) -> None:
    """Give ``app`` its EXPORT_CONCURRENCY export slots (``take_export_slot`` takes one)."""
    app.extensions[_EXPORT_SLOTS] = threading.BoundedSemaphore(app.config["EXPORT_CONCURRENCY"])


def take_export_slot() -> Callable[[], None] | None:
    """Take a free export slot of this process and return its release; None when none is free.

    An export holds a thread of the worker for as long as it streams (a
    million rows: 10 s and more), where other requests take milliseconds: a
    few clients' exports, well within any rate limit, would take every
    thread and leave every other request waiting. One more export is to be
    refused at once (EXPORTS_BUSY), not queued.
    """
    slots: threading.BoundedSemaphore = current_app.extensions[_EXPORT_SLOTS]
    return slots.release if slots.acquire(blocking=False) else None


def csv_response(engine: Engine, query: ExportQuery, headers: dict[str, str],
                 release_slot: Callable[[], None]) -> Response:
    """Return a 200 streaming the CSV of ``query``, or raise before any byte is sent.

    ``release_slot`` (``take_export_slot``'s) is called once the body ends,
    or as this raises. Raises InvalidParameterError when more rows than
    ``query.max_rows`` match, and the database's errors when it cannot count
    or run the query.
    """
    chunks = _csv_chunks(engine, query, request_id(), release_slot)
    rows = cast(int, next(chunks))  # counts, runs the query, reads the first rows: errors are JSON
    return Response(cast(Iterator[bytes], chunks), content_type=CSV_CONTENT_TYPE,
                    headers=_csv_headers(rows, headers))


def csv_head_response(engine: Engine, query: ExportQuery, headers: dict[str, str]) -> Response:
    """Return the headers ``csv_response`` would send, from a count alone: the answer to HEAD.

    The rows are never queried: on MySQL the server would sort every one of
    them, and reading past them cost a second a million, for a body nobody
    reads. The count is what a GET at this moment sends. The body is an empty
    iterator, so no Content-Length is sent, as none is with the streamed GET.
    Raises as ``count_rows`` does.
    """
    rows = count_rows(engine, query)
    return Response(iter(()), content_type=CSV_CONTENT_TYPE, headers=_csv_headers(rows, headers))


def count_rows(engine: Engine, query: ExportQuery) -> int:
    """Return how many rows match, counted on a connection of ``engine`` as ``csv_response`` does.

    Pass the engine ``csv_response`` gets: the export's, where it has one,
    waits longer for an answer than the request's session, and a count of a
    large MySQL table can take longer than that session waits. Raises as
    ``check_row_cap`` does.
    """
    with Session(bind=engine) as session:
        return check_row_cap(session, query)


def _csv_headers(rows: int, headers: dict[str, str]) -> dict[str, str]:
    return {"Content-Disposition": CONTENT_DISPOSITION, ROW_COUNT_HEADER: str(rows), **headers}


def _csv_chunks(engine: Engine, query: ExportQuery, log_id: str,
                release_slot: Callable[[], None]) -> Iterator[int | bytes]:
    """Yield the row count once the first rows are read, then the CSV in chunks.

    The export has a connection of its own rather than the request's
    session, which is closed when the view returns, before the body is
    sent; it is given back as the body ends, cut short or not. The count
    and the rows come from one transaction (on SQLite too, see
    ``lib.db.configure_engine``), so the CSV holds exactly the rows counted.
    ``log_id`` is the request's ID, for the log: the body is sent after
    the request's context is gone. ``release_slot`` is called as the body
    ends, however it ends.
    """
    try:
        connection = engine.connect()
        session = Session(bind=connection)
        result: Result | None = None
        try:
            rows, result = _open_rows(session, query)
            first_rows = result.fetchmany(BATCH_ROWS)
            yield rows
            yield from _encoded(itertools.chain(first_rows, result), query.fields, log_id)
        finally:
            _release(connection, session, result)
    finally:
        release_slot()


def _release(connection: Connection, session: Session, result: Result | None) -> None:
    """Give the export's connection back to the pool; never let this spoil a finished body.

    Closing a half-read result ends the query: on MySQL by reading and
    dropping the rows still on their way (about a second per million), the
    only way to end an unbuffered query and keep the connection. A
    connection that cannot be closed cleanly (the database went away) is
    discarded.
    """
    try:
        if result is not None:
            result.close()
        session.close()
    except Exception as exc:  # the body is sent or already cut short; only the pool is left
        logger.warning("CSV export: its database connection could not be closed cleanly "
                       "(%s); it is discarded", exc.__class__.__name__)
        connection.invalidate()
    finally:
        connection.close()


def check_row_cap(session: Session, query: ExportQuery) -> int:
    """Return how many rows match; raise InvalidParameterError when more than ``query.max_rows``."""
    count = count_prices(session, symbols=query.symbols, start_date=query.start_date,
                         end_date=query.end_date)
    if count > query.max_rows:
        raise InvalidParameterError(
            f"the export matches {count:,} rows, more than the {query.max_rows:,} it may "
            "stream; narrow the filters (symbol, start_date, end_date)")
    return count


def _open_rows(session: Session, query: ExportQuery) -> tuple[int, Result]:
    """Check the row cap, then run the query; return the row count and the unread result."""
    count = check_row_cap(session, query)
    return count, stream_prices(session, symbols=query.symbols, start_date=query.start_date,
                                end_date=query.end_date, fields=query.fields,
                                batch_size=BATCH_ROWS)


def _encoded(rows: Iterable[Row], fields: Sequence[str], log_id: str) -> Iterator[bytes]:
    """Yield the header and rows (columns in ``fields`` order) as UTF-8 CSV chunks.

    Logs a failure, or a client that stopped reading, with the rows written
    so far and the request's ID (``log_id``).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: CRLF line ends, quotes only where needed
    writer.writerow(fields)
    sent = 0
    try:
        for row in rows:
            writer.writerow(record_values(row, fields))
            sent += 1
            if buffer.tell() >= CHUNK_CHARS:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()
    except GeneratorExit:
        logger.info("CSV export stopped after %d rows: the client stopped reading "
                    "request_id=%s", sent, log_id)
        raise
    except Exception as exc:
        logger.error("CSV export failed after %d rows (%s); the response was cut short "
                     "request_id=%s", sent, exc.__class__.__name__, log_id, exc_info=exc)
        raise
