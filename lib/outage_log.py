"""Log a failure that repeats with every request once per interval, not once per request."""
import logging
import threading
import time
from collections.abc import Callable

# While a dependency is down, each worker says so at most once per this many seconds.
OUTAGE_LINE_INTERVAL_SECONDS = 30


class OutageLog:
    """Log a repeating failure at most once per interval, with how many requests it refused.

    Every request of an outage fails the same way; one line each would fill
    and rotate the log within minutes under load and bury what came before.
    The first failure is logged at once; later ones are counted and reported
    in the next line, at most one per ``interval`` seconds. A cause not yet
    logged in the interval is logged at once and starts a new one, so the
    log never names a cause that is past; causes that alternate (a frozen
    server's timeouts and its pool's) get a line each, not one per change.
    ``headline`` starts each line; ``refusals`` names what was counted.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic, *,
                 headline: str, refusals: str, log: logging.Logger) -> None:
        self.interval = interval
        self._clock = clock
        self._headline = headline
        self._refusals = refusals
        self._log = log
        self._lock = threading.Lock()
        self._next_line_at = 0.0
        self._logged_causes: set[str] = set()
        self._refused = 0

    def failed(self, description: str) -> None:
        """Count one refused request; log ``description`` if a line is due."""
        with self._lock:
            self._refused += 1
            now = self._clock()
            if now >= self._next_line_at:
                self._logged_causes.clear()
            elif description in self._logged_causes:
                return
            self._logged_causes.add(description)
            refused, self._refused = self._refused, 0
            self._next_line_at = now + self.interval
        if refused == 1:
            self._log.error("%s: %s", self._headline, description)
        else:
            self._log.error("%s: %s (%d %s since the last such line)", self._headline,
                            description, refused, self._refusals)
