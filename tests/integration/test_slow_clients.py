"""Idle clients against gunicorn run with the production settings (conf/gunicorn.conf.py)."""
import runpy
import socket
from contextlib import ExitStack

from conf.settings import PROJECT_ROOT
from tests.helpers import documented_variables
from tests.servers import http_get, production_gunicorn

GUNICORN_CONF = PROJECT_ROOT / "conf" / "gunicorn.conf.py"
# Each health request must answer within this. A threaded worker holds an
# idle connection in a thread for at most 5 s before parking it; sync workers
# were held until gunicorn's 30 s worker timeout killed them.
ANSWER_BOUND = 15


def test_idle_connections_cannot_block_health(sqlite_database_url, tmp_path, monkeypatch):
    for name in documented_variables():
        monkeypatch.delenv(name, raising=False)
    settings = runpy.run_path(str(GUNICORN_CONF))
    idle_count = settings["workers"] + 1  # a handful: more than one per worker
    with production_gunicorn(tmp_path / "log", APP_ENV="production",
                             DATABASE_URL=sqlite_database_url) as port, ExitStack() as idle:
        for _ in range(idle_count):
            # Connected, then silent: what a stalled or malicious client does.
            idle.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(3):
            status, _, body = http_get(port, "/api/health", timeout=ANSWER_BOUND)
            assert (status, body["status"]) == (200, "ok")


def test_a_burst_past_the_open_files_limit_waits_its_turn_and_kills_no_worker(
        sqlite_database_url, tmp_path):
    """Each connection is a file descriptor: a worker accepts only what its limit has room for."""
    clients = []
    with production_gunicorn(tmp_path / "log", APP_ENV="production", open_files=64,
                             DATABASE_URL=sqlite_database_url, GUNICORN_WORKERS="2") as port:
        for _ in range(200):
            client = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND)
            client.sendall(b"GET /api/health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            clients.append(client)
        answers = []
        for client in clients:
            with client:
                answers.append(client.makefile("rb").readline())
        status, _, body = http_get(port, "/api/health", timeout=ANSWER_BOUND)
        assert (status, body["status"]) == (200, "ok")
    assert answers == [b"HTTP/1.1 200 OK\r\n"] * 200
    output = (tmp_path / "log" / "gunicorn.out").read_text(errors="replace")
    assert "Exception in worker process" not in output and "Too many open files" not in output
    assert ("the open files limit (64) leaves each worker room for 8 connections at once; "
            "the others wait: raise it (ulimit -n; in compose, ulimits: nofile)") in output
