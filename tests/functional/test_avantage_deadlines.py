"""AlphaVantageClient's deadlines per symbol and per run, against the real local fake server."""
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from werkzeug.wrappers import Request, Response

from lib.avantage_api import AlphaVantageClient, DeadlineExceededError

API_KEY = "SECRETKEY123"
IBM = "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"


@pytest.fixture
def make_client(fake_alphavantage):
    clients: list[AlphaVantageClient] = []
    sleeps: list[float] = []

    def make(**options) -> AlphaVantageClient:
        settings = {"base_url": fake_alphavantage.url, "backoff_factor": 0,
                    "sleep": sleeps.append, "timeout": (1, 30), **options}
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


def test_an_answer_that_trickles_in_fails_at_the_deadline(fake_alphavantage, make_client):
    def trickle(_request: Request) -> Response:
        def body():
            for byte in b'{"Time Series (Daily)": {}}' * 10:
                time.sleep(0.05)  # each byte well within the read timeout
                yield bytes([byte])
        return Response(body(), content_type="application/json")

    fake_alphavantage.queue_handler(trickle)
    client = make_client(symbol_deadline=0.5, max_retries=0)
    started = time.monotonic()
    # Read whole, the 13.5 s answer would fail as malformed JSON instead.
    with pytest.raises(DeadlineExceededError) as caught:
        client.fetch_daily("IBM")
    assert caught.value.symbol == "IBM" and not caught.value.ends_the_run
    # The reading stops at the deadline, not when the answer ends or a second later.
    assert time.monotonic() - started < 1.4


@pytest.fixture
def trickled_headers() -> Iterator[str]:
    """A server that sends an answer's status line and headers a byte every 50 ms; yield its URL.

    Each byte comes well within the read timeout: only the deadline can end the wait.
    """
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            head = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: slow\r\n" * 20
            for byte in head:
                if stop.wait(0.05):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:  # the client cut the connection
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/query"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_headers_that_trickle_in_fail_at_the_deadline(trickled_headers, make_client):
    """requests reads the headers itself: a byte at a time they held it past every deadline."""
    client = make_client(base_url=trickled_headers, symbol_deadline=0.5, max_retries=0)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="within 0.5s, the deadline per symbol"):
        client.fetch_daily("IBM")
    assert time.monotonic() - started < 1.4  # the 380 bytes take 19 s


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
                                                                    make_client):
    """A 5xx that comes back once the deadline stopped the retries is reported as the deadline."""
    def slow_error(_request: Request) -> Response:
        time.sleep(0.3)
        return Response("busy", status=503)

    for _ in range(2):  # the second answer comes after the deadline, whatever the first did
        fake_alphavantage.queue_handler(slow_error)
    client = make_client(symbol_deadline=0.5, max_retries=3)
    with pytest.raises(DeadlineExceededError, match="within 0.5s, the deadline per symbol"):
        client.fetch_daily("IBM")


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


def test_the_run_clock_starts_at_the_first_fetch(fake_alphavantage, make_client):
    client = make_client(run_deadline=0.5)
    time.sleep(0.6)  # the client exists before the run starts, e.g. while migrating
    fake_alphavantage.queue_fixture(IBM)
    assert client.fetch_daily("IBM").symbol == "IBM"


def test_a_rate_limit_wait_past_the_deadline_is_not_slept(fake_alphavantage, make_client):
    fake_alphavantage.queue_error("burst_limit")
    client = make_client(symbol_deadline=5, rate_limit_wait=15)
    with pytest.raises(DeadlineExceededError, match="within 5s, the deadline per symbol"):
        client.fetch_daily("IBM")
    assert make_client.sleeps == []
    assert len(fake_alphavantage.requests) == 1
