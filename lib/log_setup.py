"""Configure logging once per program: stderr plus a rotating file in LOG_DIR.

Every line is written through ``SafeFormatter``, so text a client controls
(a request path, a parameter, an exception message quoting either) can
neither forge a log line nor send escape sequences to an operator's terminal.
"""
import io
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import cast

from concurrent_log_handler import ConcurrentRotatingFileHandler

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
_HANDLER_MARK = "_financial_log_handler"
# Where a record keeps its text, so that handlers sharing a formatter format it once.
_FORMATTED = "_safe_text"
# Lines of a traceback or stack after a record's first line start with this,
# so none of them can pass for a record of its own.
CONTINUATION_INDENT = "    "

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 controls, DEL, C1 controls (NEL among them) and the Unicode line and
# paragraph separators, which some viewers also break lines at.
_CONTROL_ESCAPES = {
    code: _NAMED_ESCAPES.get(chr(code), f"\\x{code:02x}")
    for code in [*range(0x20), *range(0x7F, 0xA0)]
} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


# As a record's ``extra``: it goes to the log file only, beside a line the
# program prints on stderr in its own words (the console would say it twice).
FILE_ONLY = {"file_only": True}
# Loggers that narrate their own set-up at INFO on every start (alembic lists
# each plugin it loads): below DEBUG only their warnings and errors are kept.
SETUP_CHATTY_LOGGERS = ("alembic.runtime.plugins",)

# Select Graphic Rendition: the colour and weight codes of terminal output.
_TERMINAL_STYLE = re.compile(r"\x1b\[[0-9;]*m")


def escape_controls(text: str) -> str:
    """Return ``text`` with control characters escaped (CR as ``\\r``, ESC as ``\\x1b``)."""
    return text.translate(_CONTROL_ESCAPES)


class SafeFormatter(logging.Formatter):
    """Format a record as one line of its own, whatever its message holds.

    The record's line has every control character escaped. A traceback or
    stack keeps its line breaks, so it stays readable, but each of its lines
    is indented and has its other control characters escaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The machine's local time with its offset from UTC (``2026-11-29 10:15:02,113+0000``).

        Recorded run times are UTC; the offset lets a reader match the two,
        and tells the hour a daylight-saving change repeats.
        """
        return super().formatTime(record, datefmt) + time.strftime(
            "%z", self.converter(record.created))

    def format(self, record: logging.LogRecord) -> str:
        formatted = record.__dict__.get(_FORMATTED)
        if formatted is not None and formatted[0] is self:
            return formatted[1]
        head, newline, rest = super().format(record).partition("\n")
        text = head
        if newline:
            lines = (CONTINUATION_INDENT + escape_controls(line) for line in rest.split("\n"))
            text = head + "\n" + "\n".join(lines)
        record.__dict__[_FORMATTED] = (self, text)
        return text


def configure_logging(program: str, log_dir: str, level: str = "INFO",
                      console_level: str | None = None, console_tracebacks: bool = True,
                      console_quiet: tuple[str, ...] = (),
                      max_bytes: int = MAX_LOG_BYTES) -> Path:
    """Send the root logger to stderr and to ``<log_dir>/<program>.log``.

    ``console_level`` raises the bar for stderr only (a CLI prints its own
    summary and wants just warnings there); the file always gets ``level``.
    ``console_tracebacks=False`` keeps stderr to one line per record while
    the file still gets the traceback; a record logged with ``FILE_ONLY``
    goes to the file alone. Records below ERROR from the loggers
    named in ``console_quiet`` (and their children) go to the file only.

    Every gunicorn worker (and every replica on a shared volume) writes the
    same file, so the file handler (concurrent-log-handler) takes a lock
    file's lock around each write and rollover: the standard
    RotatingFileHandler would rotate from every process and lose records.
    By default the two handlers share one formatter, which keeps its text on
    the record, so each record is formatted once; with
    ``console_tracebacks=False`` (the fetch job's call) stderr has a one-line
    formatter of its own, and a record is formatted once per handler.

    Calling it again replaces the handlers it added before, so building
    several apps in one process (tests) does not duplicate lines.
    Returns the log file's path.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()

    log_path = Path(log_dir) / f"{program}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    formatter = SafeFormatter(LOG_FORMAT)
    console = logging.StreamHandler()
    console.setLevel(console_level or level)
    console.setFormatter(formatter if console_tracebacks else _OneLineFormatter(LOG_FORMAT))
    console.addFilter(_not_file_only)
    if console_quiet:
        console.addFilter(_ErrorsOnlyFrom(console_quiet))
    # A character UTF-8 cannot encode (a lone surrogate, as an undecodable file
    # name gives) is written as "?"; the library's default drops it unseen.
    log_file = _LogFile(
        log_path, maxBytes=max_bytes, backupCount=LOG_BACKUPS, encoding="utf-8",
        unicode_error_policy="replace")
    log_file.setFormatter(formatter)
    for handler in (console, log_file):
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    chatty_level = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    for name in SETUP_CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty_level)
    return log_path


def add_filter_once(logger_name: str, filter_class: type[logging.Filter]) -> None:
    """Give ``logger_name`` a ``filter_class()`` unless it has one already.

    Each app the factory builds registers its filters again (tests build
    many in one process); one of each is enough.
    """
    logger = logging.getLogger(logger_name)
    if not any(isinstance(existing, filter_class) for existing in logger.filters):
        logger.addFilter(filter_class())


class _LogFile(ConcurrentRotatingFileHandler):
    """The shared log file, saying once, not per record, that it cannot be written.

    A full or read-only disk, or a deleted LOG_DIR, fails every write: the
    library's handler then prints a traceback of some forty lines to stderr
    per record, per request under load, into the container's log (often on
    the same full disk). Instead stderr gets one line when the file fails and
    the file (and stderr) one when it is written again, with the number of
    records that failed meanwhile. The records themselves still reach stderr
    at its level; the request is never failed for its log line.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._failed_records = 0
        self._failed_now = False
        self._telling_failure = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._telling_failure:  # the line saying the file failed: for stderr only
            return
        self._failed_now = False
        super().emit(record)  # calls handleError instead of raising
        if self._failed_records and not self._failed_now:
            failed, self._failed_records = self._failed_records, 0
            _log_file_logger.warning("the log file %s is written again; %d record%s could not "
                                     "be written to it meanwhile", self.baseFilename, failed,
                                     "" if failed == 1 else "s")

    def do_write(self, msg: str) -> None:
        # Called with the file locked. A record the disk cut short ends
        # without a line break: the next record starts a line of its own.
        if self._failed_records and not self._ends_a_line():
            msg = "\n" + msg
        super().do_write(msg)

    def _ends_a_line(self) -> bool:
        try:
            with open(self.baseFilename, "rb") as file:
                file.seek(-1, os.SEEK_END)  # OSError in an empty file
                return file.read(1) == b"\n"
        except OSError:
            return True

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a record that cannot be formatted: a bug, not the disk
            super().handleError(record)
            return
        self._drop_stream()
        self._failed_now = True
        self._failed_records += 1
        if self._failed_records > 1:
            return
        self._telling_failure = True
        try:
            _log_file_logger.error("cannot write the log file %s (%s); until it can be written "
                                   "again its records go to stderr only, at stderr's level",
                                   self.baseFilename, error.strerror or error.__class__.__name__)
        finally:
            self._telling_failure = False

    def _drop_stream(self) -> None:
        """Close the file, dropping what its buffer still holds of the records that failed.

        Kept, it would reach the file with the next write that finds room,
        long after, out of order, though counted as missed. Closing the raw
        file first makes the buffer's own close (and its finalizer) skip the flush.
        """
        stream, self.stream = self.stream, None
        if stream is not None:
            cast(io.BufferedWriter, stream.buffer).raw.close()


# Not a child of any program's logger: its lines go to the root's handlers only.
_log_file_logger = logging.getLogger("lib.log_setup")


def drop_terminal_styles(logger_name: str) -> None:
    """Remove the colour codes ``logger_name`` puts in its records; idempotent.

    werkzeug's development server colours its own lines for a terminal;
    in a log file, escaped, they would read ``\x1b[33m``.
    """
    add_filter_once(logger_name, _DropTerminalStyles)


class _DropTerminalStyles(logging.Filter):
    """Strip colour codes from a record's message and text arguments, keeping its format."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TERMINAL_STYLE.sub("", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_TERMINAL_STYLE.sub("", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


def split_fixed_messages(logger_name: str) -> None:
    """Log each line of ``logger_name``'s multi-line fixed messages as a record; idempotent.

    A fixed message (one without arguments) is the library's own text, never
    a client's: werkzeug's start-up banner is one record of several lines,
    which would otherwise read as one line with an escaped ``\n``. A message
    with arguments stays one record, escaped as usual.
    """
    add_filter_once(logger_name, _SplitFixedMessages)


class _SplitFixedMessages(logging.Filter):
    """Drop a multi-line fixed message, logging each of its lines in its place, in order."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args or not isinstance(record.msg, str) or "\n" not in record.msg:
            return True
        logger = logging.getLogger(record.name)
        for line in record.msg.split("\n"):
            logger.log(record.levelno, "%s", line)
        return False


def _not_file_only(record: logging.LogRecord) -> bool:
    """Keep a record logged with ``FILE_ONLY`` off the console."""
    return not getattr(record, "file_only", False)


class _ErrorsOnlyFrom(logging.Filter):
    """Let through only errors from the named loggers and their children; all else passes."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self._names = names

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        return not any(record.name == name or record.name.startswith(name + ".")
                       for name in self._names)


class _OneLineFormatter(SafeFormatter):
    """Format a record without its traceback (the log file keeps that)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
