"""stop_on_signals: the first SIGTERM or SIGINT asks to stop, the second acts as usual."""
import logging
import os
import signal

import pytest

from lib.stop_signals import stop_on_signals


def test_the_first_signal_asks_to_stop_and_the_second_acts_as_usual():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(logging.getLogger("test")) as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert (stop.is_set(), stop.signal_name) == (True, "SIGINT")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
