"""Real processes and sockets for fault tests: TCP proxies that stall or delay, a private
Redis, gunicorn with the production settings. All on 127.0.0.1, free ports, bounded waits.

The shared MariaDB and Redis are never frozen or stopped: a test freezes the
proxy in front of them, or a Redis server of its own.
"""
import http.client
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import redis

from conf.settings import PROJECT_ROOT
from tests.helpers import free_port, isolated_environment, wait_for


class _Link:
    """One client connection and, unless it arrived while stalled, its upstream one."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.frozen = upstream is None
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class _LocalServer:
    """A listener on a free port of 127.0.0.1 whose thread hands each connection to ``_serve``.

    A connection is taken off the listen queue under ``_lock``, and ``_take``
    counts it there: read under the same lock, the queue's length and the
    counts add up to every connection a client opened, none between the two.
    The lock is reentrant, so a test holding it (accepting nothing) may read
    the counts.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.RLock()
        self._closed = False

    def _start(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        threading.Thread(target=self._accept_loop, args=(selector,), daemon=True).start()

    def _accept_loop(self, selector: selectors.BaseSelector) -> None:
        with selector:
            while not self._closed:
                if not selector.select(timeout=0.1):
                    continue
                with self._lock:
                    try:
                        client, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    except OSError:  # closed
                        return
                    self._take()
                client.setblocking(True)
                self._serve(client)

    def _queued(self) -> int:
        """Count the connections the kernel holds for ``accept``: clients see them connected.

        Linux's TCP_INFO of a listening socket gives its queue's length as
        ``tcpi_unacked``: the fifth 32-bit field, after eight one-byte ones.
        A connection its client closed there is still queued: accepted, it
        reads as ended at once.
        """
        info = self._listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
        return struct.unpack_from("<I", info, 24)[0]

    def _take(self) -> None:
        """Count a connection just accepted; called under ``_lock``."""

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


class StallingProxy(_LocalServer):
    """A TCP proxy on 127.0.0.1 that forwards to ``target_port`` until told to stall.

    ``stall()`` freezes the server behind it as SIGSTOP would: connections, old
    and new, are accepted and read from, but nothing reaches the server and
    nothing comes back. ``resume()`` drops the frozen connections (clients
    reconnect, as after a restart) and forwards new ones again. ``received``
    counts the bytes clients sent, so a test can tell nobody asked meanwhile;
    ``hung_up`` the connections their clients closed, so a test can tell one
    was given up on rather than left waiting; ``connected`` those whose end
    the proxy has yet to see, queued ones it has yet to accept included (a
    client may have given one up already), so a test can wait until the
    counts are final.
    ``delay`` (seconds, 0 at first) holds each chunk the server sends before
    passing it on: a server whose replies come late but come, under the
    client's timeout where a stalled one trips it (a reply is one chunk
    unless it is large).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        super().__init__()
        self._target = (target_host, target_port)
        self._links: list[_Link] = []
        self._stalled = False
        self.received = 0
        self.accepted = 0
        self.hung_up = 0
        self._open = 0
        self.delay = 0.0
        self._start()

    @property
    def connected(self) -> int:
        with self._lock:
            return self._open + self._queued()

    def stall(self) -> None:
        with self._lock:
            self._stalled = True
            for link in self._links:
                link.frozen = True

    def resume(self) -> None:
        with self._lock:
            self._stalled = False
            frozen = [link for link in self._links if link.frozen]
            self._links = [link for link in self._links if not link.frozen]
        for link in frozen:
            link.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            links, self._links = self._links, []
        for link in links:
            link.close()
        self._listener.close()

    def _take(self) -> None:
        self.accepted += 1
        self._open += 1

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            stalled = self._stalled
        upstream = None if stalled else socket.create_connection(self._target, timeout=5)
        if upstream is not None:
            upstream.settimeout(None)
        link = _Link(client, upstream)
        with self._lock:
            self._links.append(link)
        threading.Thread(target=self._pump, args=(link, client, True), daemon=True).start()
        if upstream is not None:
            threading.Thread(target=self._pump, args=(link, upstream, False), daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client:
                    with self._lock:
                        self.received += len(data)
                elif self.delay:
                    time.sleep(self.delay)
                if link.frozen:
                    continue
                sink = link.upstream if from_client else link.client
                if sink is not None:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                if from_client:
                    self._open -= 1
                if from_client and not link.closed:
                    self.hung_up += 1
            link.close()


@contextmanager
def stalling_proxy(target_port: int, target_host: str = "127.0.0.1") -> Iterator[StallingProxy]:
    proxy = StallingProxy(target_port, target_host)
    try:
        yield proxy
    finally:
        proxy.close()


class PausingProxy(StallingProxy):
    """A StallingProxy whose ``stall()`` is a server stopped (SIGSTOP), ``resume()`` continued.

    What is sent either way meanwhile is kept, and ``resume()`` delivers it, as
    the stopped server would read it from its sockets (or send it) once it runs
    again: also what a client sent before it gave up and closed its connection
    (a COMMIT then still commits: the server reads it before the end of the
    connection). Connections stay open, and forward again. Of the base
    class's counts it keeps ``received``, ``accepted`` and ``connected``;
    ``hung_up`` stays 0, and ``delay`` is not applied.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._held: dict[tuple[int, bool], list[bytes]] = {}
        self._gone: set[int] = set()
        super().__init__(target_port, target_host)

    def resume(self) -> None:
        with self._lock:
            self._stalled = False
            links = [link for link in self._links if link.frozen]
            for link in links:
                link.frozen = False
            held = {key: self._held.pop(key, []) for link in links
                    for key in ((id(link), True), (id(link), False))}
        for link in links:
            assert link.upstream is not None
            try:
                for data in held[id(link), True]:
                    link.upstream.sendall(data)
                if id(link) in self._gone:  # the server reads what was sent, then the end
                    link.upstream.shutdown(socket.SHUT_WR)
                else:
                    for data in held[id(link), False]:
                        link.client.sendall(data)
            except OSError:
                link.close()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target, timeout=5)
        upstream.settimeout(None)
        link = _Link(client, upstream)
        with self._lock:
            link.frozen = self._stalled
            self._links.append(link)
        for source, from_client in ((client, True), (upstream, False)):
            threading.Thread(target=self._pump, args=(link, source, from_client),
                             daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if from_client:
                        self.received += len(data)
                    if link.frozen:
                        self._held.setdefault((id(link), from_client), []).append(data)
                        continue
                sink = link.upstream if from_client else link.client
                assert sink is not None
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            if from_client:
                self._open -= 1
            keep = from_client and link.frozen
            if keep:
                self._gone.add(id(link))
        if keep:  # the server, stopped, has yet to read what the client sent
            link.client.close()
        else:
            link.close()


@contextmanager
def pausing_proxy(target_port: int, target_host: str = "127.0.0.1") -> Iterator[PausingProxy]:
    proxy = PausingProxy(target_port, target_host)
    try:
        yield proxy
    finally:
        proxy.close()


class RefusingMySQL(_LocalServer):
    """A server on 127.0.0.1 that refuses every connection with one MySQL error, as a full one does.

    MariaDB and MySQL at ``max_connections`` answer a new connection with an
    error packet instead of the handshake ("Too many connections", 1040), the
    client's protocol not yet known, so without an SQL state.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__()
        payload = b"\xff" + struct.pack("<H", code) + message.encode()
        self._packet = struct.pack("<I", len(payload))[:3] + b"\x00" + payload
        self.refused = 0
        self._start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _serve(self, client: socket.socket) -> None:
        # Counted before it is sent: a client that has its answer sees it counted.
        self.refused += 1
        with client:
            client.sendall(self._packet)


@contextmanager
def refusing_mysql(code: int, message: str) -> Iterator[RefusingMySQL]:
    server = RefusingMySQL(code, message)
    try:
        yield server
    finally:
        server.close()


class PrivateRedis:
    """A redis-server of the test's own on a free port: free to be killed or paused."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed"
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, f"redis-server on port {self.port}", 10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)

    def fill(self) -> None:
        """Leave it no room, as a full Redis that never evicts: every write is refused (OOM)."""
        self._set_maxmemory("1")

    def make_room(self) -> None:
        self._set_maxmemory("0")  # no limit

    def refused_for_memory(self) -> int:
        """Count the commands it refused for want of memory (OOM) since it started."""
        client = redis.Redis(port=self.port)
        try:
            return client.info("errorstats").get("errorstat_OOM", {}).get("count", 0)
        finally:
            client.close()

    def _set_maxmemory(self, size: str) -> None:
        client = redis.Redis(port=self.port)
        try:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", size)
        finally:
            client.close()

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "redis-server exited"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@contextmanager
def production_gunicorn(log_dir: Path, app_spec: str = "app:create_app()",
                        ready_path: str = "/api/health", open_files: int | None = None,
                        **settings: str) -> Iterator[int]:
    """Run gunicorn with conf/gunicorn.conf.py (as the image does) on a free port; yield it.

    ``settings`` are environment variables (DATABASE_URL, GUNICORN_WORKERS...);
    ``open_files`` its limit of open files (``ulimit -n``).
    Waits until the server answers ``ready_path``; output goes to ``log_dir``.
    """
    port = free_port()
    env = isolated_environment(LOG_DIR=str(log_dir), GUNICORN_BIND=f"127.0.0.1:{port}",
                               **settings)
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "gunicorn", "--config",
               str(PROJECT_ROOT / "conf" / "gunicorn.conf.py"), app_spec]
    with open(log_dir / "gunicorn.out", "wb") as output:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=None if open_files is None else partial(
                                       resource.setrlimit, resource.RLIMIT_NOFILE,
                                       (open_files, open_files)))
    try:
        wait_for(lambda: _accepts(process, port, log_dir, ready_path), f"gunicorn on port {port}")
        yield port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _accepts(process: subprocess.Popen, port: int, log_dir: Path, ready_path: str) -> bool:
    if process.poll() is not None:
        output = (log_dir / "gunicorn.out").read_text(errors="replace")
        raise AssertionError(f"gunicorn exited with {process.returncode}:\n{output}")
    try:
        status, _, _ = http_get(port, ready_path, timeout=5)
    except (OSError, http.client.HTTPException):
        return False
    return status in (200, 503)


def http_get(port: int, path: str, timeout: float = 5,
             headers: dict | None = None) -> tuple[int, dict, dict]:
    """GET ``path``; return (status, headers, JSON body). ``timeout`` bounds every wait."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()
