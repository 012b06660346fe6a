"""Idle clients against gunicorn run with the production settings (conf/gunicorn.conf.py)."""
import runpy
import socket
from contextlib import ExitStack

from conf.settings import PROJECT_ROOT
from tests.helpers import HANG_GUARD_SECONDS, documented_variables
from tests.servers import http_get, production_gunicorn

GUNICORN_CONF = PROJECT_ROOT / "conf" / "gunicorn.conf.py"
# How long gunicorn is told to keep an idle connection: far past every wait of a test.
KEEP_IDLE_SECONDS = 3600


def is_held_open(client: socket.socket) -> bool:
    """Tell whether the server still holds ``client``'s connection open, having sent nothing."""
    client.setblocking(False)
    try:
        client.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:  # reset
        return False
    return False  # closed, or answered a request never sent


def test_idle_connections_cannot_block_health(sqlite_database_url, tmp_path, monkeypatch):
    """Health answers while more idle clients than workers hold their connections open.

    gunicorn closes a connection that sent nothing once its keepalive has
    passed (5 s in production); here it is told to keep them far longer than
    the test lasts, so an idle client loses its connection only with its
    worker. A sync worker (gunicorn's pick when threads is 1) held by one is
    killed at gunicorn's worker timeout, and its client's connection with
    it: so the answer is awaited past that timeout, and every idle client
    must still be connected once it has come. A threaded worker parks an
    idle connection in its poller and answers the others meanwhile.
    """
    for name in documented_variables():
        monkeypatch.delenv(name, raising=False)
    settings = runpy.run_path(str(GUNICORN_CONF))
    idle_count = settings["workers"] + 1  # a handful: more than one per worker
    outlast_worker_kills = settings["timeout"] + HANG_GUARD_SECONDS
    log_dir = tmp_path / "log"
    with production_gunicorn(log_dir, APP_ENV="production", DATABASE_URL=sqlite_database_url,
                             GUNICORN_CMD_ARGS=f"--keep-alive {KEEP_IDLE_SECONDS}") as port, \
            ExitStack() as idle:
        # Connected, then silent: what a stalled or malicious client does. They
        # come first, so workers that serve one connection at a time take them.
        clients = [idle.enter_context(socket.create_connection(("127.0.0.1", port),
                                                               timeout=HANG_GUARD_SECONDS))
                   for _ in range(idle_count)]
        for _ in range(3):
            status, _, body = http_get(port, "/api/health", timeout=outlast_worker_kills)
            assert (status, body["status"]) == (200, "ok")
            held_open = sum(map(is_held_open, clients))
            assert held_open == idle_count, "a worker held by an idle client was killed to answer"
    assert "WORKER TIMEOUT" not in (log_dir / "gunicorn.out").read_text(errors="replace")


def test_a_burst_past_the_open_files_limit_waits_its_turn_and_kills_no_worker(
        sqlite_database_url, tmp_path):
    """Each connection is a file descriptor: a worker accepts only what its limit has room for."""
    clients = []
    with production_gunicorn(tmp_path / "log", APP_ENV="production", open_files=64,
                             DATABASE_URL=sqlite_database_url, GUNICORN_WORKERS="2") as port:
        for _ in range(200):
            client = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_SECONDS)
            client.sendall(b"GET /api/health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            clients.append(client)
        answers = []
        for client in clients:
            with client:
                answers.append(client.makefile("rb").readline())
        status, _, body = http_get(port, "/api/health", timeout=HANG_GUARD_SECONDS)
        assert (status, body["status"]) == (200, "ok")
    assert answers == [b"HTTP/1.1 200 OK\r\n"] * 200
    output = (tmp_path / "log" / "gunicorn.out").read_text(errors="replace")
    assert "Exception in worker process" not in output and "Too many open files" not in output
    assert ("the open files limit (64) leaves each worker room for 8 connections at once; "
            "the others wait: raise it (ulimit -n; in compose, ulimits: nofile)") in output
