"""A circuit breaker for a shared backend (Redis) whose failure must not fail or slow requests."""
import logging
import math
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

OPENED = "{name} failed ({error}); answering without it, next try in {wait:g}s"
CLOSED = "{name} is back after {outage:.0f}s; answers computed without it: {skipped}"


class CircuitBreaker:
    """After a failure, refuse calls for ``retry_wait`` seconds, then let one trial through.

    A successful trial closes it again; a failed one waits another period.
    A call that succeeds but took over ``slow_after`` seconds counts as a
    failure: a backend that answers that slowly costs every call as much as
    one that fails, and answering without it is quicker.
    ``allows`` is a lock-free attribute read while closed, so the usual path
    costs nothing; the lock only guards the changes of state. (pybreaker holds
    its lock during the guarded call, which would serialize every cache round
    trip of a threaded worker.) The outage is logged once when it starts and
    once when it ends, by ``log``: the logger of the module using the backend,
    in the words of ``opened`` and ``closed``, which may name ``name``,
    ``error``, ``wait`` (seconds), ``outage`` (seconds) and ``skipped`` (calls refused).
    """

    def __init__(self, name: str, retry_wait: float,
                 clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger = logger, *,
                 opened: str = OPENED, closed: str = CLOSED,
                 slow_after: float = math.inf) -> None:
        self.name = name
        self._log = log
        self._opened = opened
        self._closed = closed
        self.retry_wait = retry_wait
        self.slow_after = slow_after
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None
        self._opened_at = 0.0
        self._skipped = 0

    @property
    def is_closed(self) -> bool:
        return self._open_until is None

    def allows(self) -> bool:
        """Tell whether to call now: closed, or open with a trial due. Counts refusals."""
        if self._open_until is None:
            return True
        with self._lock:
            if self._open_until is None:
                return True
            now = self._clock()
            if now >= self._open_until:
                # One trial per period: concurrent callers keep skipping meanwhile.
                self._open_until = now + self.retry_wait
                return True
            self._skipped += 1
            return False

    def failed(self, exc: Exception) -> None:
        """Record a failed call: open (and say so, once per outage) or stay open."""
        self._open(f"{exc.__class__.__name__}: {exc}")

    def succeeded(self, took: float = 0.0) -> None:
        """Record a successful call that took ``took`` seconds: close, and say so if it was open.

        A slow one (over ``slow_after``) is recorded as failed instead.
        """
        if took > self.slow_after:
            self._open(f"slow: a reply took {took:.1f}s")
            return
        if self._open_until is None:
            return
        with self._lock:
            if self._open_until is None:
                return
            self._open_until = None
            self._log.warning("%s", self._closed.format(
                name=self.name, outage=self._clock() - self._opened_at, skipped=self._skipped))

    def _open(self, error: str) -> None:
        """Open, or stay open, for another ``retry_wait``; log ``error`` if it was closed."""
        with self._lock:
            now = self._clock()
            if self._open_until is None:
                self._opened_at, self._skipped = now, 0
                self._log.warning("%s", self._opened.format(
                    name=self.name, error=error, wait=self.retry_wait))
            self._open_until = now + self.retry_wait
