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
