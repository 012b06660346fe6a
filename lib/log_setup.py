"""Configure logging once per program: stderr plus a rotating file in LOG_DIR.

Every line is written through ``SafeFormatter``, so text a client controls
(a request path, a parameter, an exception message quoting either) can
neither forge a log line nor send escape sequences to an operator's terminal.
"""
import logging
from pathlib import Path

from concurrent_log_handler import ConcurrentRotatingFileHandler

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
_HANDLER_MARK = "_financial_log_handler"
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

    def format(self, record: logging.LogRecord) -> str:
        head, newline, rest = super().format(record).partition("\n")
        if not newline:
            return head
        lines = (CONTINUATION_INDENT + escape_controls(line) for line in rest.split("\n"))
        return head + "\n" + "\n".join(lines)


def configure_logging(program: str, log_dir: str, level: str = "INFO",
                      console_level: str | None = None, console_tracebacks: bool = True,
                      max_bytes: int = MAX_LOG_BYTES) -> Path:
    """Send the root logger to stderr and to ``<log_dir>/<program>.log``.

    ``console_level`` raises the bar for stderr only (a CLI prints its own
    summary and wants just warnings there); the file always gets ``level``.
    ``console_tracebacks=False`` keeps stderr to one line per record while
    the file still gets the traceback.

    The file handler takes a lock around each write and rollover, because
    every gunicorn worker (and every replica on a shared volume) writes the
    same file; the standard RotatingFileHandler loses records then.

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
    console = logging.StreamHandler()
    console.setLevel(console_level or level)
    console.setFormatter(SafeFormatter(LOG_FORMAT) if console_tracebacks
                         else _OneLineFormatter(LOG_FORMAT))
    log_file = ConcurrentRotatingFileHandler(
        log_path, maxBytes=max_bytes, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    log_file.setFormatter(SafeFormatter(LOG_FORMAT))
    for handler in (console, log_file):
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    return log_path


class _OneLineFormatter(SafeFormatter):
    """Format a record without its traceback (the log file keeps that)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
