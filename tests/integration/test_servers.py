"""The app under real servers: gunicorn with several workers, the image's entrypoint, `flask run`.

Workers are made to restart every two requests (--max-requests 2), so a run
of requests is always served by several processes: what is shared (metrics,
the rate limit) must add up across them, and what is per process would not.
"""
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from app.extensions import db
from tests.helpers import (
    HANG_GUARD_SECONDS, build_app, free_port, insert_prices,
    insert_synthetic_rows, migrate_database, sqlite_url,
)
from tests.deployment import ROOT, deploy_environment, image_command

START_SECONDS = 30


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    logs: tuple[Path, Path]

    def output(self) -> str:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in self.logs)

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` on a new connection; return (status, headers, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def wait_until(self, path: str, status: int) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"exited with {self.process.returncode}:\n{self.output()}")
            with suppress(OSError, http.client.HTTPException):
                if self.get(path)[0] == status:
                    return
            time.sleep(0.1)
        pytest.fail(f"{path} did not answer {status} in {START_SECONDS}s:\n{self.output()}")


@pytest.fixture
def start_server(tmp_path) -> Iterator:
    """Start ``command`` (default: gunicorn as the image runs it) on a free port.

    "{port}" in the command is replaced by the port.
    """
    started: list[Server] = []

    def _start(settings: dict[str, str], command: list[str] | None = None) -> Server:
        port = free_port()
        env = deploy_environment(**{"APP_ENV": "testing", "LOG_DIR": str(tmp_path / "log"),
                                    "GUNICORN_BIND": f"127.0.0.1:{port}",
                                    "GUNICORN_WORKERS": "2", **settings})
        command = [arg.format(port=port) for arg in
                   command or image_command()[1:] + ["--max-requests", "2"]]
        logs = (tmp_path / f"stdout-{port}.log", tmp_path / f"stderr-{port}.log")
        with open(logs[0], "wb") as stdout, open(logs[1], "wb") as stderr:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr,
                                       start_new_session=True)
        started.append(Server(process, port, logs))
        return started[-1]

    yield _start
    for server in started:
        with suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


@pytest.fixture
def seeded_sqlite_url(tmp_path, make_price) -> str:
    """A migrated SQLite database of its own holding two IBM days."""
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")
    application = build_app(url, tmp_path / "log")
    with application.app_context():
        insert_prices(db.session, [
            make_price(symbol="IBM", date=datetime.date(2023, 3, day)) for day in (23, 24)
        ])
        db.session.commit()
        db.engine.dispose()
    return url


def scrape(server: Server) -> dict[tuple[str, tuple], float]:
    status, headers, body = server.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def booted_workers(server: Server, at_least: int) -> int:
    """Count gunicorn's worker boots, waiting for replacements still starting.

    With --max-requests 2 a worker exits after its second request and the
    arbiter boots its replacement on its own time. Returns as soon as
    ``at_least`` have booted; the wait for them is a hang guard only.
    """
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        booted = server.output().count("Booting worker with pid")
        if booted >= at_least or time.monotonic() > deadline:
            return booted
        time.sleep(0.1)


def test_metrics_add_up_over_every_worker(start_server, seeded_sqlite_url):
    server = start_server({"DATABASE_URL": seeded_sqlite_url})
    server.wait_until("/api/health", 200)
    for _ in range(4):
        assert server.get("/api/financial_data?symbol=IBM")[0] == 200
    for _ in range(2):
        assert server.get("/api/nothing")[0] == 404
    assert server.get("/api/financial_data?limit=0")[0] == 400

    samples = scrape(server)
    assert booted_workers(server, at_least=4) >= 4, "requests spread over several processes"

    def requests(endpoint: str, status: str) -> float:
        labels = (("endpoint", endpoint), ("method", "GET"), ("status", status))
        return samples.get(("financial_http_requests_total", labels), 0.0)

    assert requests("/api/financial_data", "200") == 4
    assert requests("/api/financial_data", "400") == 1
    assert requests("none", "404") == 2
    assert requests("/api/health", "200") >= 1
    latency = ("financial_http_request_duration_seconds_count",
               (("endpoint", "/api/financial_data"),))
    assert samples[latency] == 5
    lookups = {result: sum(value for (name, labels), value in samples.items()
                           if name == "financial_cache_lookups_total"
                           and ("result", result) in labels) for result in ("hit", "miss")}
    assert lookups["hit"] + lookups["miss"] >= 4
    assert samples[("financial_newest_stored_date_seconds", (("symbol", "IBM"),))] == 1679616000
    assert samples[("financial_database_up", ())] == 1


def test_gunicorn_reads_the_checkouts_env_file_under_the_environment(
        start_server, seeded_sqlite_url, tmp_path):
    """Outside a container, .env holds the settings for gunicorn as for flask and the job."""
    checkout = tmp_path / "checkout"
    (checkout / "conf").mkdir(parents=True)
    config = shutil.copy(ROOT / "conf" / "gunicorn.conf.py", checkout / "conf")
    (checkout / ".env").write_text(f"DATABASE_URL={seeded_sqlite_url}\n"
                                   f"LOG_DIR={tmp_path / 'env-file-log'}\n")
    server = start_server({"PYTHON_DOTENV_DISABLED": ""},
                          command=["gunicorn", "--config", str(config), "app:create_app()"])
    server.wait_until("/api/health", 200)
    status, _, body = server.get("/api/financial_data?symbol=IBM")
    assert status == 200 and json.loads(body)["pagination"]["count"] == 2, "the .env's database"
    assert (tmp_path / "log" / "api.log").exists(), "the environment's LOG_DIR wins"
    assert not (tmp_path / "env-file-log").exists()


def children(pid: int) -> list[int]:
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_reload_keeps_the_metrics_and_the_stop_after_it_removes_their_folder(
        start_server, seeded_sqlite_url):
    server = start_server({"DATABASE_URL": seeded_sqlite_url}, command=image_command()[1:])
    server.wait_until("/api/health", 200)
    # /api/health answers once one worker is up; both must be before counting.
    assert booted_workers(server, at_least=2) == 2
    workers = children(server.process.pid)
    # Where the workers count: the folder holding their files.
    memory = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    folder, = {path.parent for worker in workers
               for path in memory.glob(f"api-metrics-*/*_{worker}.db")}
    health = ("financial_http_requests_total",
              (("endpoint", "/api/health"), ("method", "GET"), ("status", "200")))
    before = scrape(server)[health]

    server.process.send_signal(signal.SIGHUP)  # new workers, the same master
    assert booted_workers(server, at_least=4) == 4
    assert scrape(server)[health] >= before

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=START_SECONDS) == 0, server.output()
    assert not folder.exists()


# More CSV than the socket buffers between gunicorn and a client that stops
# reading hold (4 MB at most on Linux by default): about 10 MB with every field.
STALLED_EXPORT_ROWS = 100_000


def test_a_stop_mid_export_leaves_a_body_an_http_1_0_client_can_tell_is_cut(
        start_server, tmp_path):
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")
    application = build_app(url, tmp_path / "log")
    with application.app_context():
        insert_synthetic_rows(db.session, STALLED_EXPORT_ROWS)
        db.engine.dispose()
    server = start_server({"DATABASE_URL": url,
                           "GUNICORN_CMD_ARGS": "--graceful-timeout 1"},
                          command=image_command()[1:])
    server.wait_until("/api/health", 200)
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.settimeout(START_SECONDS)
        client.connect(("127.0.0.1", server.port))
        # HTTP/1.0: no chunks, so the end of the connection is the end of the body.
        client.sendall(b"GET /api/financial_data/export?fields=all HTTP/1.0\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += client.recv(4096)
        server.process.send_signal(signal.SIGTERM)  # the export waits on the client
        # Read on only once the server is gone: read meanwhile, a fast machine
        # could send every row within the grace period, and nothing would be cut.
        assert server.process.wait(timeout=START_SECONDS) == 0, server.output()
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 ") and b"Transfer-Encoding" not in head
    announced = re.search(rb"\r\nX-Row-Count: (\d+)\r\n", head)
    assert announced, head
    assert int(announced.group(1)) == STALLED_EXPORT_ROWS
    assert body.count(b"\r\n") - 1 < STALLED_EXPORT_ROWS, "cut short by the stop"


def test_each_request_is_logged_once_with_its_id(start_server, seeded_sqlite_url):
    server = start_server({"DATABASE_URL": seeded_sqlite_url})
    server.wait_until("/api/health", 200)
    marker = uuid.uuid4().hex
    status, headers, _ = server.get(f"/api/financial_data?symbol=IBM&limit=3&m={marker}",
                                    **{"X-Request-ID": f"id-{marker}"})
    assert status == 400 and headers["X-Request-ID"] == f"id-{marker}"
    server.get("/api/health")  # a request after it, so its line is surely written
    lines = [line for line in server.output().splitlines() if marker in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"client=127.0.0.1 request_id=id-{marker}")


@pytest.mark.redis
def test_the_rate_limit_is_shared_by_every_worker_through_redis(start_server, seeded_sqlite_url,
                                                                redis_url):
    client = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    server = start_server({"DATABASE_URL": seeded_sqlite_url, "RATE_LIMIT": "3 per minute",
                           "RATELIMIT_STORAGE_URI": redis_url, "TRUSTED_PROXY_HOPS": "1"})
    storage = redis.Redis.from_url(redis_url)
    try:
        server.wait_until("/api/health", 200)
        answers = [server.get("/api/financial_data", **{"X-Forwarded-For": client})
                   for _ in range(4)]
        assert booted_workers(server, at_least=3) >= 3, "requests spread over several processes"
        assert [status for status, _, _ in answers] == [200, 200, 200, 429]
        _, headers, body = answers[-1]
        assert 0 < int(headers["Retry-After"]) <= 61  # to X-RateLimit-Reset, rounded up
        assert json.loads(body)["info"]["error"].startswith("too many requests: at most 3 per "
                                                            "minute per client")
        other_client = server.get("/api/financial_data", **{"X-Forwarded-For": "198.51.100.251"})
        assert other_client[0] == 200
    finally:
        for key in storage.scan_iter(match="*198.51.100.*"):
            storage.delete(key)
        storage.close()


def test_an_unusable_database_url_stops_gunicorn_with_one_line(start_server, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    server = start_server({"DATABASE_URL": f"sqlite:///{blocker}/data/financial.db"})
    assert server.process.wait(timeout=START_SECONDS) != 0
    output = server.output()
    expected = (f"Error: DATABASE_URL points into the folder {blocker}/data, which cannot be "
                "created (Not a directory)")
    assert output.count(expected) == 1, output
    assert "Traceback" not in output and "Booting worker" not in output
    assert metrics_folders_of(server.process.pid) == []


def test_every_unusable_setting_stops_gunicorn_in_one_line(start_server):
    server = start_server({"DATABASE_URL": "mysql+nodriver://user:s3cret@db/financial",
                           "DATABASE_TIMEOUT": "0", "RATE_LIMIT": "lots",
                           "TRUSTED_PROXY_HOPS": "-1"})
    assert server.process.wait(timeout=START_SECONDS) != 0
    output = server.output()
    expected = ("Error: DATABASE_TIMEOUT must be a positive number of seconds, got 0; "
                "DATABASE_URL names an unknown database driver 'mysql+nodriver'; "
                "TRUSTED_PROXY_HOPS must be 0 or more, got -1; "
                "RATE_LIMIT must be a limit such as '600 per minute', got 'lots'\n")
    assert output.count(expected) == 1, output
    assert "Traceback" not in output and "Booting worker" not in output and "s3cret" not in output


@pytest.mark.parametrize("name, value", [("GUNICORN_WORKERS", "abc"), ("GUNICORN_WORKERS", "0"),
                                         ("GUNICORN_THREADS", "1_0")])
def test_an_unusable_gunicorn_setting_stops_it_in_one_line(start_server, name, value):
    server = start_server({name: value})
    assert server.process.wait(timeout=START_SECONDS) != 0
    lines = [line for line in server.output().splitlines() if line]
    assert lines == [f"Error: {name} must be a whole number of 1 or more, got '{value}'"]


def test_an_unusable_setting_stops_a_bare_gunicorn_in_one_line(start_server, tmp_path):
    """Without conf/gunicorn.conf.py each worker builds the app: it must not print a traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    server = start_server({"DATABASE_URL": f"sqlite:///{blocker}/data/financial.db"},
                          [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}",
                           "--no-control-socket", "app:create_app()"])
    assert server.process.wait(timeout=START_SECONDS) != 0
    output = server.output()
    expected = (f"DATABASE_URL points into the folder {blocker}/data, which cannot be "
                "created (Not a directory)\n")
    assert output.count(expected) == 1, output
    assert "Traceback" not in output and "App failed to load" in output, output


def metrics_folders_of(master: int) -> list[Path]:
    """The metrics folders of the gunicorn whose master is ``master``: it counts there too."""
    memory = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return [folder for folder in memory.glob("api-metrics-*")
            if any(folder.glob(f"*_{master}.db"))]


def test_a_gunicorn_that_cannot_listen_leaves_no_metrics_folder(start_server, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        server = start_server({"DATABASE_URL": sqlite_url(tmp_path)},
                              command=image_command()[1:] + ["--bind", bind])
        assert server.process.wait(timeout=START_SECONDS) == 1
    assert "Address already in use" in server.output()
    assert metrics_folders_of(server.process.pid) == []


def test_an_unusable_database_url_stops_the_flask_cli_with_one_line(tmp_path):
    env = deploy_environment(APP_ENV="testing", LOG_DIR=str(tmp_path), FLASK_SKIP_DOTENV="1",
                             DATABASE_URL="mysql+nodriver://user:s3cret@db/financial")
    result = subprocess.run(["flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("Error: DATABASE_URL names an unknown database driver "
                             "'mysql+nodriver'\n")


def test_every_unusable_setting_stops_the_flask_cli_in_one_line(tmp_path):
    env = deploy_environment(APP_ENV="staging", LOG_DIR=str(tmp_path), FLASK_SKIP_DOTENV="1",
                             DATABASE_URL="mysql+nodriver://user:s3cret@db/financial",
                             RATE_LIMIT="lots", TRUSTED_PROXY_HOPS="-1")
    result = subprocess.run(["flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        "Error: APP_ENV must be one of development, production, testing, got 'staging'; "
        "DATABASE_URL names an unknown database driver 'mysql+nodriver'; "
        "TRUSTED_PROXY_HOPS must be 0 or more, got -1; "
        "RATE_LIMIT must be a limit such as '600 per minute', got 'lots'\n")


def test_what_only_building_the_app_finds_stops_the_flask_cli_in_the_same_line(tmp_path):
    """An SQLite folder and a rate-limit storage are named with the rest, and nothing is created."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    env = deploy_environment(APP_ENV="testing", LOG_DIR=str(tmp_path / "log"),
                             FLASK_SKIP_DOTENV="1", TRUSTED_PROXY_HOPS="-1",
                             DATABASE_URL=f"sqlite:///{blocker}/financial.db",
                             RATE_LIMIT="5 per second", RATELIMIT_STORAGE_URI="foo://x")
    result = subprocess.run(["flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: DATABASE_URL points into the folder {blocker}, which cannot be created "
        "(File exists); TRUSTED_PROXY_HOPS must be 0 or more, got -1; "
        "RATELIMIT_STORAGE_URI names an unknown storage; expected e.g. memory:// or "
        "redis://host:6379/1\n")
    assert list(tmp_path.iterdir()) == [blocker]


def test_the_development_server_logs_each_request_once(start_server, seeded_sqlite_url):
    server = start_server({"DATABASE_URL": seeded_sqlite_url, "FLASK_SKIP_DOTENV": "1"},
                          command=["flask", "--app", "app", "run", "--port", "{port}"])
    server.wait_until("/api/health", 200)
    marker = uuid.uuid4().hex
    assert server.get(f"/api/financial_data?m={marker}")[0] == 400
    server.get("/api/health")
    lines = [line for line in server.output().splitlines() if marker in line]
    assert len(lines) == 1 and " app.requests: GET /api/financial_data?m=" in lines[0], lines
    assert f"Running on http://127.0.0.1:{server.port}" in server.output(), "its banner stays"


def raw_status(port: int, request: bytes) -> bytes:
    """Send ``request`` as written and return the answer's status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        received = b""
        while b"\r\n" not in received and (chunk := client.recv(4096)):
            received += chunk
    return received.partition(b"\r\n")[0]


@pytest.mark.parametrize("command", [None, ["flask", "--app", "app", "run", "--port", "{port}"]],
                         ids=["gunicorn", "flask-run"])
def test_an_http_1_1_request_without_a_host_header_is_a_400_on_each_server(
        start_server, seeded_sqlite_url, command):
    """RFC 9112 3.2: each server passes it on without HTTP_HOST; the app refuses it."""
    server = start_server({"DATABASE_URL": seeded_sqlite_url, "FLASK_SKIP_DOTENV": "1"},
                          command=command)
    server.wait_until("/api/health", 200)
    close = b"Connection: close\r\n"
    assert raw_status(server.port, b"GET /api/health HTTP/1.1\r\n" + close + b"\r\n"
                      ).startswith(b"HTTP/1.1 400 ")
    for request in (b"GET /api/health HTTP/1.1\r\nHost:\r\n" + close + b"\r\n",
                    b"GET /api/health HTTP/1.0\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"):
        assert raw_status(server.port, request).endswith(b" 200 OK"), request


class SwitchableProxy:
    """A TCP proxy to ``target`` on a port of its own: while off, connections are refused."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def turn_on(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def turn_off(self) -> None:
        """Stop listening and cut every open connection, as a crashed server would."""
        if self._listener is not None:
            # shutdown, not just close: only that wakes the thread blocked in accept().
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in self._sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("empty_database_url", [pytest.param("mysql", marks=pytest.mark.mysql)],
                         indirect=True)
def test_the_api_answers_503_while_the_database_is_down(start_server, empty_database_url):
    database = make_url(empty_database_url)
    proxy = SwitchableProxy((database.host or "127.0.0.1", database.port or 3306))
    through_proxy = database.set(host="127.0.0.1", port=proxy.port)
    # The image's entrypoint: the database does not answer at start.
    server = start_server({"DATABASE_URL": through_proxy.render_as_string(hide_password=False),
                           "DB_WAIT_TIMEOUT": "1"}, command=image_command())
    try:
        server.wait_until("/api/health", 503)
        status, headers, body = server.get("/api/financial_data")
        assert (status, headers["Retry-After"]) == (503, "5")
        assert json.loads(body) == {"data": [], "pagination": None, "info": {
            "error": "the database is unavailable, please retry later"}}

        proxy.turn_on()  # back: the entrypoint's background run migrates the new database
        # Health waits for the last migration; data may answer a little earlier.
        server.wait_until("/api/health", 200)
        assert server.get("/api/financial_data")[0] == 200

        proxy.turn_off()  # down again while serving
        server.wait_until("/api/health", 503)
        assert server.get("/api/financial_data?symbol=NEW")[0] == 503
        proxy.turn_on()
        server.wait_until("/api/health", 200)
        assert server.get("/api/financial_data?symbol=NEW")[0] == 200
    finally:
        proxy.turn_off()
