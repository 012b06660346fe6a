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

    With ``back`` (e.g. "database is back"), ``succeeded`` ends a logged
    outage with one line saying so, how long it lasted (since its first
    failure) and what it refused since the last line. A failure soon after,
    of a cause logged in the interval, is counted and logged once the
    interval has passed, so a dependency that fails every other request
    gets two lines per interval, not two per request.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic, *,
                 headline: str, refusals: str, log: logging.Logger,
                 back: str | None = None) -> None:
        self.interval = interval
        self._clock = clock
        self._headline = headline
        self._refusals = refusals
        self._back = back
        self._log = log
        self._lock = threading.Lock()
        self._next_line_at = 0.0
        self._logged_causes: set[str] = set()
        self._refused = 0
        # When the failures since the last success began (None: none since);
        # _is_logged tells whether a line said so.
        self._failing_since: float | None = None
        self._is_logged = False

    @property
    def is_failing(self) -> bool:
        """Tell whether a failure came after the last success; a lock-free read."""
        return self._failing_since is not None

    def failed(self, description: str) -> None:
        """Count one refused request; log ``description`` if a line is due."""
        with self._lock:
            self._refused += 1
            now = self._clock()
            if self._failing_since is None:
                self._failing_since = now
            if now >= self._next_line_at:
                self._logged_causes.clear()
            elif description in self._logged_causes:
                return
            self._logged_causes.add(description)
            refused, self._refused = self._refused, 0
            self._next_line_at = now + self.interval
            self._is_logged = True
        if refused == 1:
            self._log.error("%s: %s", self._headline, description)
        else:
            self._log.error("%s: %s (%d %s since the last such line)", self._headline,
                            description, refused, self._refusals)

    def succeeded(self) -> None:
        """Note a request served again: end the outage, with a line if one was logged.

        Nothing but an attribute read while nothing failed, so the caller may
        call it on every success.
        """
        if self._failing_since is None:
            return
        with self._lock:
            if self._failing_since is None:
                return
            lasted = self._clock() - self._failing_since
            self._failing_since = None
            if not (self._is_logged and self._back):
                return
            self._is_logged = False
            refused, self._refused = self._refused, 0
        self._log.warning("%s after %.0fs; %s since the last '%s' line: %d", self._back, lasted,
                          self._refusals, self._headline, refused)
