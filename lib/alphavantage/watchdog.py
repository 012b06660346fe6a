"""Cut a connection at the fetch's deadline while its answer's headers are awaited.

A read timeout bounds each wait for a byte, not the whole answer: a server
that sends its status line and headers a byte at a time, each within the
timeout, would hold ``requests.Session.get`` (and the job) for ever, past
every deadline. The client reads the body itself and watches the clock
(``AlphaVantageClient._read_body``); up to the end of the headers, which
requests reads, a timer shuts the connection's socket down at the deadline
instead, and the wait ends as a network failure.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_WATCHED = threading.local()


@contextmanager
def deadline_watched(deadline: float | None) -> Iterator[None]:
    """Let the connections this thread opens or asks in the block be cut at ``deadline``.

    ``deadline`` is a ``time.monotonic()`` instant; None watches nothing.
    """
    _WATCHED.deadline = deadline
    try:
        yield
    finally:
        _WATCHED.deadline = None


def _shut_down(connection: HTTPConnection) -> None:
    """Shut down the socket ``connection`` has now: under TLS, once wrapped, the TLS one."""
    sock = connection.sock
    if sock is None:  # closed meanwhile
        return
    # The plain socket's own shutdown, also under TLS: the SSL object's would
    # fail the read with a ValueError instead of an end of stream.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # closed meanwhile, or handed over to its TLS wrapper
        pass


class _WatchedConnection(HTTPConnection):
    """urllib3's connection, cut at the thread's deadline until the answer's headers are in."""

    _watchdog: threading.Timer | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._watch()  # as soon as there is a socket (TLS: once its wrapper has it)
        return sock

    def getresponse(self) -> Any:
        if self._watchdog is None:  # a kept-alive connection
            self._watch()
        try:
            return super().getresponse()
        finally:
            self._unwatch()

    def _watch(self) -> None:
        self._unwatch()  # a request that failed before its answer left one armed
        deadline = getattr(_WATCHED, "deadline", None)
        if deadline is None:
            return
        self._watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shut_down,
                                         (self,))
        self._watchdog.daemon = True
        self._watchdog.start()

    def _unwatch(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections ``deadline_watched`` cuts at its deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedPool,
                                                   "https": _WatchedHTTPSPool}
