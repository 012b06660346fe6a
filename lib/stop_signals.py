"""Stop requests from SIGTERM and SIGINT, for a long-running job that must stop cleanly.

The first signal asks the job to stop after its current unit of work; where
it only waits (``StopRequest.interrupting``) the wait ends at once. Before
that, during the program's start-up, SIGINT ends it at once, in one line
(``stop_starting_on_sigint``).
"""
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, NoReturn

# What signal.getsignal returns and signal.signal takes back (typeshed's _HANDLER).
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Stopped(BaseException):
    """A stop request ended a wait (``StopRequest.interrupting``): nothing to finish.

    A BaseException, as KeyboardInterrupt is: no ``except Exception`` on the
    way takes it for a failure of what was awaited (e.g. the database).
    """


class StopRequest:
    """Set by the first SIGTERM or SIGINT: the job stops after its current unit of work.

    Inside ``interrupting()`` the signal also raises Stopped at once: for
    waits that write nothing, so ending them is safe, and that a frozen
    server could hold far past a container's stop grace period (the fetch
    job's reads before a run wait up to DATABASE_JOB_TIMEOUT, 600 s).
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.is_interrupting = False

    def is_set(self) -> bool:
        return self.signal_name is not None

    @contextmanager
    def interrupting(self) -> Iterator[None]:
        """Run the block so that a stop request, even an earlier one, raises Stopped."""
        self.is_interrupting = True
        try:
            if self.is_set():
                raise Stopped()
            yield
        finally:
            self.is_interrupting = False


@contextmanager
def stop_on_signals(log: logging.Logger) -> Iterator[StopRequest]:
    """Turn SIGTERM and SIGINT into a stop request for the block; a second one acts as usual.

    The handler only sets a flag (and raises Stopped inside
    ``StopRequest.interrupting``): logging from a signal handler could
    re-enter a handler's lock. The stop is logged to ``log`` (the program's
    logger) as the block ends, in one line: a second SIGINT's KeyboardInterrupt
    too (``SIGINT received again: stopped at once``), which goes on to the
    caller, to end the program without a traceback.
    """
    stop = StopRequest()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: _after_start_up(signal.getsignal(signum)) for signum in signals}

    def request_stop(signum, _frame):
        stop.signal_name = signal.Signals(signum).name
        for restored, handler in previous.items():
            signal.signal(restored, handler)
        if stop.is_interrupting:
            raise Stopped()

    for signum in signals:
        signal.signal(signum, request_stop)
    at_once = False
    try:
        yield stop
    except KeyboardInterrupt:
        at_once = True
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if at_once:
            log.warning("SIGINT received%s: stopped at once", _after(stop.signal_name))
        elif stop.is_set():
            log.warning("%s received: stopped", stop.signal_name)


def _after(first: str | None) -> str:
    """Say what came before the SIGINT that stopped the job at once."""
    if first is None:
        return ""
    return " again" if first == "SIGINT" else f" after {first}"


def stop_starting_on_sigint(program: str) -> None:
    """Until stop_on_signals takes over, end the process at SIGINT, saying so in one line.

    For a program's start-up (its imports, building its app), which writes
    nothing a kill could leave half-done: Ctrl-C prints ``<program>: SIGINT
    received during start-up: stopped`` on stderr, not Python's traceback,
    and ends the process as SIGINT ends a program (``end_as_sigint``). A
    SIGINT the program started ignoring (``job &`` in a script, nohup) stays
    ignored.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _StartUpStop(program))


def end_as_sigint() -> NoReturn:
    """End the process as SIGINT's default action does: status 130 in a shell.

    A shell, or the loop of a script running the program, stops on a program
    SIGINT killed, and goes on after one that merely exited 130.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    # Reached only if the kill did not end it (SIGINT blocked, or PID 1, whose
    # default actions the kernel skips): the status a shell would show.
    sys.exit(128 + signal.SIGINT)


class _StartUpStop:
    """The SIGINT handler ``stop_starting_on_sigint`` installs."""

    def __init__(self, program: str) -> None:
        self.line = f"{program}: SIGINT received during start-up: stopped\n".encode()

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        # os.write, not print: the handler may run inside a write to
        # sys.stderr, whose buffer refuses a reentrant call.
        with suppress(OSError):  # stderr closed (2>&-)
            os.write(2, self.line)
        end_as_sigint()


def _after_start_up(handler: _Handler) -> _Handler:
    """Return the handler to go back to after ``stop_on_signals``: a start-up's is done with.

    In its place Python's default raises KeyboardInterrupt: the second
    SIGINT that stops the job at once, logged as it leaves the block.
    """
    return signal.default_int_handler if isinstance(handler, _StartUpStop) else handler
