"""stop_on_signals: the first SIGTERM or SIGINT asks to stop, the second acts as usual.

A second SIGINT's KeyboardInterrupt is logged in one line as it leaves the block.
"""
import logging
import os
import signal

import pytest

from lib.stop_signals import stop_on_signals, stop_starting_on_sigint


@pytest.fixture
def sigint_as_python_starts():
    """SIGINT handled as a Python program starts with it, whatever pytest inherited.

    A pytest run started with SIGINT ignored (``pytest &`` in a script)
    would leave it ignored, and these tests' own SIGINTs would do nothing.
    """
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("sigint_as_python_starts")
def test_the_first_signal_asks_to_stop_and_the_second_acts_as_usual():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(logging.getLogger("test")) as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert (stop.is_set(), stop.signal_name) == (True, "SIGINT")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("first, said", [
    (signal.SIGINT, "SIGINT received again: stopped at once"),
    (signal.SIGTERM, "SIGINT received after SIGTERM: stopped at once"),
], ids=["SIGINT", "SIGTERM"])
@pytest.mark.usefixtures("sigint_as_python_starts")
def test_a_second_sigint_is_logged_in_one_line_as_it_goes_on_to_the_caller(caplog, first, said):
    before = signal.getsignal(signal.SIGTERM)
    with caplog.at_level(logging.WARNING, logger="test"):
        with pytest.raises(KeyboardInterrupt), stop_on_signals(logging.getLogger("test")):
            os.kill(os.getpid(), first)
            os.kill(os.getpid(), signal.SIGINT)
    assert [record.getMessage() for record in caplog.records] == [said]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.usefixtures("sigint_as_python_starts")
def test_a_start_ups_sigint_handler_gives_way_to_pythons_after_the_block():
    """A second SIGINT must raise KeyboardInterrupt (logged as the block ends), not end
    the process as one during start-up does."""
    stop_starting_on_sigint("test")
    starting = signal.getsignal(signal.SIGINT)
    assert starting is not signal.default_int_handler
    with stop_on_signals(logging.getLogger("test")):
        assert signal.getsignal(signal.SIGINT) is not starting
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigint_ignored_from_the_start_stays_ignored_during_start_up():
    """As a job started in the background by a script (``job &``) inherits it."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop_starting_on_sigint("test")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
