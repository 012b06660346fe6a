"""AlphaVantageClient's deadlines per symbol and per run, against the real local fake server."""
import socket
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from werkzeug.wrappers import Request, Response

from lib.alphavantage import client as client_module
from lib.alphavantage import watchdog
from lib.avantage_api import TIME_SERIES_DAILY_ADJUSTED, AlphaVantageClient, DeadlineExceededError
from tests.fake_alphavantage import ALPHAVANTAGE_FIXTURES
from tests.helpers import HANG_GUARD_SECONDS, call_guarded, wait_for

API_KEY = "SECRETKEY123"
IBM = "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"
# What each trickled answer sends, a byte every 50 ms, until the test ends.
TRICKLED_HEAD = b"HTTP/1.1 200 OK\r\n"
PADDING = b"X-Padding: slow\r\n"
# The stepped clock's deadline and step: binary fractions, so the sums are exact.
DEADLINE = 5.0
STEP = 0.25


def trickle_head(connection: socket.socket, stop: threading.Event,
                 before_byte: Callable[[], object] = lambda: None) -> bool:
    """Send a status line and then header lines a byte every 50 ms, for ever.

    Each byte comes well within any read timeout; ``before_byte`` is called
    before each. Return True once the client cut the connection, False when
    ``stop`` ended the sending.
    """
    head = TRICKLED_HEAD
    while True:
        for byte in head:
            if stop.wait(0.05):
                return False
            before_byte()
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                return True
        head = PADDING


class _Alarm:
    """A ``threading.Timer`` of the stepped clock: it rings as the clock reaches ``at``."""

    def __init__(self, clock: "SteppedClock", at: float, function: Callable, args) -> None:
        self.clock, self.at, self.function, self.args = clock, at, function, args
        self.daemon = True

    def start(self) -> None:
        self.clock.set_alarm(self)

    def cancel(self) -> None:
        self.clock.cancel_alarm(self)


class SteppedClock:
    """The monotonic clock the client and its watchdog read, and the watchdog's timers.

    Time stands still but for ``step``, which the fake server calls as it
    trickles, so where the client gives up is told by bytes, not by how busy
    the machine is. A timer counts from the instant its thread last read
    the clock (the watchdog reads it to set the timer: a step between the
    two, from another thread, cannot move the instant), and rings in the
    stepping thread once the clock reaches it; ``rang`` records when.
    ``step_once_read`` moves the clock only if the client read it since it
    last moved: the client then sees every instant, and cannot read on past
    one unnoticed.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.start = self.now = start
        self.rang: list[float] = []
        self._read = False
        self._alarms: list[_Alarm] = []
        self._lock = threading.Lock()
        self._last_read = threading.local()

    def __call__(self) -> float:
        with self._lock:
            self._read = True
            self._last_read.now = self.now
            return self.now

    def timer(self, interval: float, function: Callable, args=()) -> _Alarm:
        return _Alarm(self, getattr(self._last_read, "now", self.now) + interval, function, args)

    def set_alarm(self, alarm: _Alarm) -> None:
        with self._lock:
            self._alarms.append(alarm)
        self._ring()

    def cancel_alarm(self, alarm: _Alarm) -> None:
        with self._lock:
            if alarm in self._alarms:
                self._alarms.remove(alarm)

    def step(self, seconds: float = STEP) -> None:
        with self._lock:
            self.now += seconds
            self._read = False
        self._ring()

    def step_once_read(self, seconds: float = STEP) -> None:
        if self._read:
            self.step(seconds)

    def _ring(self) -> None:
        with self._lock:
            due = [alarm for alarm in self._alarms if alarm.at <= self.now]
            self._alarms = [alarm for alarm in self._alarms if alarm.at > self.now]
            self.rang += [self.now] * len(due)
        for alarm in due:
            alarm.function(*alarm.args)


@pytest.fixture
def stepped_clock(monkeypatch) -> SteppedClock:
    """Put the client's and its watchdog's clock, and the watchdog's timers, on a SteppedClock."""
    clock = SteppedClock()
    monkeypatch.setattr(client_module, "time", SimpleNamespace(monotonic=clock))
    monkeypatch.setattr(watchdog, "time", SimpleNamespace(monotonic=clock))
    monkeypatch.setattr(watchdog, "threading", SimpleNamespace(Timer=clock.timer))
    return clock


@pytest.fixture
def make_client(fake_alphavantage):
    clients: list[AlphaVantageClient] = []
    sleeps: list[float] = []

    def make(**options) -> AlphaVantageClient:
        settings = {"base_url": fake_alphavantage.url, "function": TIME_SERIES_DAILY_ADJUSTED,
                    "backoff_factor": 0, "sleep": sleeps.append, "timeout": (1, 30), **options}
        client = AlphaVantageClient(API_KEY, **settings)
        clients.append(client)
        return client

    make.sleeps = sleeps
    yield make
    for client in clients:
        client.close()


def test_a_stalled_symbol_fails_at_its_deadline_without_more_retries(fake_alphavantage,
                                                                     make_client, stall):
    for _ in range(4):
        fake_alphavantage.queue_handler(stall)
    client = make_client(symbol_deadline=0.5, max_retries=3)
    with pytest.raises(DeadlineExceededError) as caught:
        client.fetch_daily("IBM")
    assert caught.value.message == ("no complete answer from AlphaVantage for IBM within 0.5s, "
                                    "the deadline per symbol")
    assert not caught.value.ends_the_run and caught.value.symbol == "IBM"
    assert len(fake_alphavantage.requests) == 1, "no retry once the deadline has passed"


def test_an_answer_that_trickles_in_fails_at_the_deadline(fake_alphavantage, make_client,
                                                          stepped_clock):
    """A body that never ends, a byte every 50 ms: the client reads it until the deadline, no later.

    Each byte the client has looked at the clock since moves the clock a
    step: the client sees the deadline's instant, and past it reads on for
    no more than the step its own last look may have let by.
    """
    stop = threading.Event()
    abandoned = threading.Event()

    def trickle(_request: Request) -> Response:
        def body():
            try:
                while not stop.wait(0.05):
                    stepped_clock.step_once_read()
                    yield b" "
            except GeneratorExit:  # werkzeug's write failed: the client hung up
                abandoned.set()
                raise
        return Response(body(), content_type="application/json")

    fake_alphavantage.queue_handler(trickle)
    client = make_client(symbol_deadline=DEADLINE, max_retries=0)
    try:
        with pytest.raises(DeadlineExceededError, match="within 5s, the deadline per symbol") \
                as caught:
            call_guarded(client.fetch_daily, "IBM")
        assert caught.value.symbol == "IBM" and not caught.value.ends_the_run
        wait_for(abandoned.is_set, "the server to see the client hang up", HANG_GUARD_SECONDS)
    finally:
        stop.set()
    assert len(fake_alphavantage.requests) == 1
    assert stepped_clock.now - stepped_clock.start <= DEADLINE + STEP, "read on past the deadline"


class TrickledHeaders:
    """A server that sends each answer's status line and headers a byte every 50 ms, for ever.

    ``cut`` is set once the client cut a connection; ``connections`` counts
    the connections accepted, all of them once ``close`` has returned.
    ``before_byte`` is called before each byte is sent.
    """

    def __init__(self, before_byte: Callable[[], object]) -> None:
        self.before_byte = before_byte
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/query"
        self.connections = 0
        self.cut = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                if self.stop.is_set():  # and no connection waits to be accepted
                    return
                continue
            self.connections += 1
            with connection:
                connection.recv(65536)
                if trickle_head(connection, self.stop, self.before_byte):
                    self.cut.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def trickled_headers(stepped_clock) -> Iterator[TrickledHeaders]:
    """A TrickledHeaders whose every byte moves the stepped clock a step."""
    server = TrickledHeaders(before_byte=stepped_clock.step)
    yield server
    server.close()


def test_headers_that_trickle_in_fail_at_the_deadline(trickled_headers, make_client,
                                                      stepped_clock):
    """requests reads the headers itself: a byte at a time they held it past every deadline.

    The watchdog's timer cuts the connection as the trickle brings the clock
    to the deadline, not a step later.
    """
    client = make_client(base_url=trickled_headers.url, symbol_deadline=DEADLINE, max_retries=3)
    with pytest.raises(DeadlineExceededError, match="within 5s, the deadline per symbol"):
        call_guarded(client.fetch_daily, "IBM")
    wait_for(trickled_headers.cut.is_set, "the server to see the connection cut",
             HANG_GUARD_SECONDS)
    trickled_headers.close()
    assert trickled_headers.connections == 1, "no retry once the deadline has passed"
    assert stepped_clock.rang == [stepped_clock.start + DEADLINE], "cut at the deadline"


class KeptAliveServer:
    """A server that answers every request on one kept-alive connection, as ``answers`` say.

    Each answer is ``("after", seconds)``, IBM's saved answer once ``clock``
    has moved that many seconds, or ``("trickle", 0)``, a status line and
    headers a byte every 50 ms for ever, each moving ``clock`` a step;
    ``cut`` is set once the client cut a trickle's connection.
    """

    def __init__(self, answers: list[tuple[str, float]], clock: SteppedClock) -> None:
        self.answers = answers
        self.clock = clock
        self.connections = 0
        self.cut = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/query"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        body = (ALPHAVANTAGE_FIXTURES / IBM).read_bytes()
        while self.answers:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed
                return
            self.connections += 1
            with connection:
                while self.answers and self.answer(connection, body):
                    pass

    def answer(self, connection: socket.socket, body: bytes) -> bool:
        request = b""
        while b"\r\n\r\n" not in request:
            data = connection.recv(65536)
            if not data:
                return False
            request += data
        kind, seconds = self.answers.pop(0)
        if kind == "trickle":
            if trickle_head(connection, self.stop, self.clock.step):
                self.cut.set()
            return False
        self.clock.step(seconds)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return True

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        self.thread.join(timeout=5)


@pytest.fixture
def kept_alive(stepped_clock):
    servers: list[KeptAliveServer] = []

    def serve(answers: list[tuple[str, float]]) -> KeptAliveServer:
        servers.append(KeptAliveServer(answers, stepped_clock))
        return servers[-1]

    yield serve
    for server in servers:
        server.close()


def test_headers_that_trickle_in_on_a_kept_alive_connection_fail_at_the_deadline(
        kept_alive, make_client, stepped_clock):
    """The connection is the first symbol's, asked again: it is watched for the second.

    The first symbol's deadline passes meanwhile: the cut comes at the second's.
    """
    server = kept_alive([("after", DEADLINE / 2), ("trickle", 0)])
    client = make_client(base_url=server.url, symbol_deadline=DEADLINE, max_retries=0)
    assert client.fetch_daily("IBM").bars
    second_starts = stepped_clock.now
    with pytest.raises(DeadlineExceededError, match="within 5s, the deadline per symbol"):
        call_guarded(client.fetch_daily, "IBM")
    wait_for(server.cut.is_set, "the server to see the connection cut", HANG_GUARD_SECONDS)
    assert server.connections == 1
    assert stepped_clock.rang == [second_starts + DEADLINE], "cut at the second's deadline"


def test_a_kept_alive_connection_is_not_cut_at_an_earlier_symbols_deadline(
        kept_alive, make_client, stepped_clock):
    """The first symbol's deadline passes while the second's answer is awaited, within its own."""
    server = kept_alive([("after", 0), ("after", 0.8 * DEADLINE)])
    client = make_client(base_url=server.url, symbol_deadline=DEADLINE, max_retries=0)
    assert client.fetch_daily("IBM").bars
    stepped_clock.step(DEADLINE / 2)
    assert client.fetch_daily("IBM").bars  # answered 1.3 deadlines after the first's start
    assert server.connections == 1
    assert stepped_clock.rang == [], "no connection cut"


def test_an_answer_that_stalls_midway_fails_at_the_deadline(fake_alphavantage, make_client):
    """Its read times out as the deadline passes: that is the deadline's failure."""
    release = threading.Event()

    def stall_midway(_request: Request) -> Response:
        def body():
            yield b'{"Time Series (Daily)": '
            release.wait(10)
        return Response(body(), content_type="application/json")

    fake_alphavantage.queue_handler(stall_midway)
    client = make_client(symbol_deadline=0.5, max_retries=0)
    try:
        with pytest.raises(DeadlineExceededError, match="within 0.5s, the deadline per symbol"):
            client.fetch_daily("IBM")
    finally:
        release.set()


def test_server_errors_until_the_deadline_are_the_deadlines_failure(fake_alphavantage,
                                                                    make_client, stepped_clock):
    """A 5xx that comes back once the deadline stopped the retries is reported as the deadline.

    The first is retried; the second comes back a hair before the deadline,
    too late for another try, and before the watchdog would cut it.
    """
    steps = iter([0.6 * DEADLINE, 0.4 * DEADLINE - 1 / 32])

    def slow_error(_request: Request) -> Response:
        stepped_clock.step(next(steps))
        return Response("busy", status=503)

    for _ in range(2):
        fake_alphavantage.queue_handler(slow_error)
    client = make_client(symbol_deadline=DEADLINE, max_retries=3)
    with pytest.raises(DeadlineExceededError, match="within 5s, the deadline per symbol"):
        client.fetch_daily("IBM")
    assert len(fake_alphavantage.requests) == 2
    assert stepped_clock.rang == [], "answered, not cut"


def test_each_symbol_gets_its_own_deadline(fake_alphavantage, make_client, stall):
    fake_alphavantage.queue_handler(stall)
    fake_alphavantage.queue_fixture(IBM)
    client = make_client(symbol_deadline=0.5, max_retries=0)
    with pytest.raises(DeadlineExceededError):
        client.fetch_daily("IBM")
    assert client.fetch_daily("IBM").symbol == "IBM"


def test_the_run_deadline_cuts_a_stalled_request_and_refuses_later_fetches(
        fake_alphavantage, make_client, stall):
    fake_alphavantage.queue_handler(stall)
    fake_alphavantage.queue_fixture(IBM)
    client = make_client(symbol_deadline=60, run_deadline=0.5)
    for _ in range(2):
        with pytest.raises(DeadlineExceededError) as caught:
            client.fetch_daily("IBM")
        assert (caught.value.message, caught.value.ends_the_run) == (
            "the run's deadline of 0.5s passed", True)
    assert len(fake_alphavantage.requests) == 1, "nothing is requested past the deadline"


def test_the_run_clock_starts_at_the_first_fetch(fake_alphavantage, make_client, stepped_clock):
    client = make_client(run_deadline=DEADLINE)
    # The client exists before the run starts, e.g. while migrating.
    stepped_clock.step(2 * DEADLINE)
    fake_alphavantage.queue_fixture(IBM)
    assert client.fetch_daily("IBM").symbol == "IBM"


def test_a_rate_limit_wait_past_the_deadline_is_not_slept(fake_alphavantage, make_client):
    fake_alphavantage.queue_error("burst_limit")
    client = make_client(symbol_deadline=5, rate_limit_wait=15)
    with pytest.raises(DeadlineExceededError, match="within 5s, the deadline per symbol"):
        client.fetch_daily("IBM")
    assert make_client.sleeps == []
    assert len(fake_alphavantage.requests) == 1
