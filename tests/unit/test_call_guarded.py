"""call_guarded, the tests' guard against a timeout under test that never fires."""
import threading

import pytest

from tests import helpers
from tests.helpers import call_guarded


def test_a_call_that_ends_gives_its_value_or_raises_its_error():
    assert call_guarded(sum, [1, 2]) == 3
    with pytest.raises(ZeroDivisionError):
        call_guarded(divmod, 1, 0)


def test_a_call_that_never_ends_fails_and_cannot_hold_the_run_open(monkeypatch):
    monkeypatch.setattr(helpers, "HANG_GUARD_SECONDS", 0.01)
    never = threading.Event()
    before = set(threading.enumerate())
    with pytest.raises(AssertionError, match="still waits after 0.01s: no timeout ended the wait"):
        call_guarded(never.wait)
    # The interpreter exits without waiting for a daemon thread.
    [waiting] = set(threading.enumerate()) - before
    assert waiting.daemon
    never.set()
