"""Large CSV exports: constant memory, and a database failure in the middle of one.

Both run on the ``large_database_url`` database (200,000 rows per backend,
seeded once for the module): enough that MariaDB is still sending rows when
the test breaks the connection (socket buffers hold a few MB), and that a body
held in memory would show in the process's size by hundreds of MB.
"""
import json
import re
import subprocess
import sys

from conf.settings import PROJECT_ROOT
from tests.helpers import LARGE_ROWS as ROWS

# synthetic_rows gives 100 symbols a day from 2000-01-03: 201 days hold 20,100 rows.
SMALL_QUERY = "fields=all&end_date=2000-07-21"
MIB = 1024


def probe(*args: str) -> dict | list:
    """Run tests/export_probe.py with ``args``; return what it reports."""
    run = subprocess.run([sys.executable, "-m", "tests.export_probe", *args], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_memory_stays_flat_however_many_rows_are_exported(large_database_url, tmp_path):
    small, large = probe("memory", large_database_url, str(tmp_path), SMALL_QUERY, "fields=all")
    assert (small["rows"], large["rows"]) == (20_100, ROWS)
    assert (small["rows_announced"], large["rows_announced"]) == (20_100, ROWS)
    assert large["bytes"] > 9 * small["bytes"]
    # Streamed, ten times the rows take no more memory than the first 20,100
    # (about 5 MB of first-use allocations); read into memory first they took
    # 27 MB and 240-280 MB (measured on SQLite and MariaDB).
    assert large["rss_growth_kib"] < small["rss_growth_kib"] + 8 * MIB, (small, large)
    assert large["rss_growth_kib"] < 16 * MIB, (small, large)


def test_a_database_failure_mid_stream_cuts_the_body_short_logs_and_frees_the_connection(
        large_database_url, tmp_path):
    outcome = probe("break", large_database_url, str(tmp_path))
    assert outcome["status"] == 200
    assert outcome["error"] == "OperationalError", "the body ends with an error, not quietly"
    assert 0 < outcome["rows_received"] < ROWS
    # Without chunks (HTTP/1.0) the body ends at a row's end: the count tells it was cut.
    assert outcome["rows_announced"] == ROWS
    assert outcome["checked_out_after"] == 0
    assert outcome["next_export"] == ("symbol,date,open_price,close_price,volume\r\n"
                                      "S000,2000-01-03,100.1234,105.0001,123456789\r\n"
                                      "S000,2000-01-04,100.1234,105.0001,123456889\r\n")
    log = (tmp_path / "api.log").read_text()
    # One ERROR line, followed by the traceback behind it.
    assert re.search(r" ERROR app\.api\.export: CSV export failed after [0-9]+ rows "
                     r"\(OperationalError\); the response was cut short request_id=[0-9a-f]{32}\n"
                     r"\s+Traceback ", log), log
