"""Run large CSV exports in a process of their own and report, as JSON, what happened.

Run by tests/integration/test_export_streaming.py, so that neither the
measurements nor the database driver's complaints at garbage collection mix
with the test process:

    python -m tests.export_probe memory URL LOG_DIR QUERY...
        Export a tiny query to warm up, then each QUERY, reading each body chunk
        by chunk as a client would; per QUERY: bytes and rows received, the rows
        announced (X-Row-Count) and the most the resident set size (RSS) grew
        above its size before that export, sampled after every chunk (KiB).
        Linux only (/proc).
    python -m tests.export_probe break URL LOG_DIR
        Start an export of every row, read its first chunk, make the database
        fail the query (interrupt it on SQLite, KILL it on MariaDB), read on;
        report the rows received and announced, the error raised, the connections still
        checked out, and whether a second export then works.
"""
import json
import os
import sys
from pathlib import Path

from sqlalchemy import create_engine, event, text

from app.api.export import EXPORT_BIND
from app.extensions import db
from tests.helpers import build_app

EXPORT = "/api/financial_data/export"
WARM_UP_QUERY = "symbol=S000&end_date=2000-01-03&fields=all"
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kib() -> int:
    """The process's resident set size now, in KiB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE_KIB


def export(client, query: str) -> dict:
    """Read the export of ``query`` chunk by chunk; return what was received and the RSS growth."""
    before = rss_kib()
    response = client.get(f"{EXPORT}?{query}")
    if response.status_code != 200:
        raise SystemExit(f"{query}: HTTP {response.status_code} {response.get_data()[:200]!r}")
    size = lines = peak = 0
    for chunk in response.response:
        size += len(chunk)
        lines += chunk.count(b"\r\n")
        peak = max(peak, rss_kib())
    response.close()
    return {"query": query, "bytes": size, "rows": lines - 1,
            "rows_announced": int(response.headers["X-Row-Count"]),
            "rss_before_kib": before, "rss_growth_kib": peak - before}


def memory(url: str, log_dir: str, queries: list[str]) -> list[dict]:
    client = build_app(url, log_dir, LOG_LEVEL="WARNING").test_client()
    export(client, WARM_UP_QUERY)
    return [export(client, query) for query in queries]


def fail_query(engine, dbapi_connection) -> None:
    """Make the database fail the query running on ``dbapi_connection``."""
    if engine.dialect.name == "sqlite":
        dbapi_connection.interrupt()
        return
    killer = create_engine(engine.url)
    try:
        with killer.connect() as connection:
            connection.execute(text(f"KILL {dbapi_connection.thread_id()}"))
    finally:
        killer.dispose()


def break_mid_stream(url: str, log_dir: str) -> dict:
    application = build_app(url, log_dir)
    client = application.test_client()
    with application.app_context():
        engine = db.engines.get(EXPORT_BIND, db.engine)  # MySQL's export has its own
        checked_out: list = []
        event.listen(engine, "checkout",
                     lambda dbapi_connection, *_: checked_out.append(dbapi_connection))
        response = client.get(f"{EXPORT}?fields=all")
        chunks = iter(response.response)
        received = next(chunks)
        # The request's session reads the data version first; the export's
        # own connection is the last one checked out.
        export_connection = checked_out[-1]
        fail_query(engine, export_connection)
        error = None
        try:
            for chunk in chunks:
                received += chunk
        except Exception as exc:
            error = exc.__class__.__name__
        response.close()
        db.session.remove()  # the request's own session, as its teardown would
        still_checked_out = sum(each.pool.checkedout() for each in db.engines.values())
        again = client.get(f"{EXPORT}?symbol=S000&end_date=2000-01-04").get_data()
    return {"status": response.status_code, "rows_received": received.count(b"\r\n") - 1,
            "rows_announced": int(response.headers["X-Row-Count"]),
            "error": error, "checked_out_after": still_checked_out,
            "next_export": again.decode()}


if __name__ == "__main__":
    command, database_url, logs, *rest = sys.argv[1:]
    outcome = memory(database_url, logs, rest) if command == "memory" else break_mid_stream(
        database_url, logs)
    print(json.dumps(outcome))
