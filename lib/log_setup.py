"""Configure logging once per program: stderr plus a rotating file in LOG_DIR.

Every line is written through ``SafeFormatter``, so text a client controls
(a request path, a parameter, an exception message quoting either) can
neither forge a log line nor send escape sequences to an operator's terminal.
"""
import fcntl
import logging
import os
import re
from pathlib import Path

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


class SharedFileHandler(logging.Handler):
    """Append records to a file many processes share; rotate it at ``max_bytes``.

    Every gunicorn worker (and every replica on a shared volume) writes the
    same file. Each record is one write(2) on a descriptor opened with
    O_APPEND, which lands whole at the end of the file whatever the other
    processes and threads write, so writing takes no lock at all: a thread
    holding a lock across a system call makes every other thread of a worker
    that logs wait for it. Only rotating does: an flock on a lock file beside
    the log, under which a process that finds the file already rotated by
    another switches to the new one instead. (The standard
    RotatingFileHandler rotates from every process and loses records;
    concurrent-log-handler takes the lock for every record, which cost as
    much as building the API's request log line.) A record written while
    another process renames the file lands in the numbered backup, never lost.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock_path = path.with_name(f".{path.name}.lock")
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit ``record`` without the handler's lock (see the class docstring)."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            if os.fstat(self._fd).st_size >= self.max_bytes:
                self._rotate()
            while data:
                data = data[os.write(self._fd, data):]
        except Exception:
            self.handleError(record)

    def _rotate(self) -> None:
        """Rename the file to ``<name>.1`` (shifting the backups), unless another process did.

        The new file replaces the old one under the same descriptor number
        (dup2), so a thread writing meanwhile writes to one or the other,
        never to a closed descriptor.
        """
        with self.lock, open(self._lock_path, "a") as lock:  # type: ignore[union-attr]
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if os.fstat(self._fd).st_size < self.max_bytes:
                return  # another thread of this process rotated it
            if self._is_current():
                for number in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{number}")
                    if older.exists():
                        older.replace(self.path.with_name(f"{self.path.name}.{number + 1}"))
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            fresh = self._open()
            os.dup2(fresh, self._fd)
            os.close(fresh)

    def _is_current(self) -> bool:
        """Tell whether the descriptor still names the file at ``path``."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        opened = os.fstat(self._fd)
        return (named.st_ino, named.st_dev) == (opened.st_ino, opened.st_dev)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        super().close()


def configure_logging(program: str, log_dir: str, level: str = "INFO",
                      console_level: str | None = None, console_tracebacks: bool = True,
                      console_quiet: tuple[str, ...] = (),
                      max_bytes: int = MAX_LOG_BYTES) -> Path:
    """Send the root logger to stderr and to ``<log_dir>/<program>.log``.

    ``console_level`` raises the bar for stderr only (a CLI prints its own
    summary and wants just warnings there); the file always gets ``level``.
    ``console_tracebacks=False`` keeps stderr to one line per record while
    the file still gets the traceback. Records below ERROR from the loggers
    named in ``console_quiet`` (and their children) go to the file only.

    Every gunicorn worker (and every replica on a shared volume) writes the
    same file: ``SharedFileHandler`` keeps each record whole across them and
    rotates the file once. The two handlers share their formatter, so each
    record is formatted once.

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
    if console_quiet:
        console.addFilter(_ErrorsOnlyFrom(console_quiet))
    log_file = SharedFileHandler(log_path, max_bytes, LOG_BACKUPS)
    log_file.setFormatter(formatter)
    for handler in (console, log_file):
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    # No format names the caller's file, line or function: spare every record
    # the stack walk that finds them (the logging HOWTO's "Optimization").
    logging._srcfile = None
    return log_path


def drop_terminal_styles(logger_name: str) -> None:
    """Remove the colour codes ``logger_name`` puts in its records; idempotent.

    werkzeug's development server colours its own lines for a terminal;
    in a log file, escaped, they would read ``\x1b[33m``.
    """
    logger = logging.getLogger(logger_name)
    if not any(isinstance(existing, _DropTerminalStyles) for existing in logger.filters):
        logger.addFilter(_DropTerminalStyles())


class _DropTerminalStyles(logging.Filter):
    """Strip colour codes from a record's message and text arguments, keeping its format."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TERMINAL_STYLE.sub("", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_TERMINAL_STYLE.sub("", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


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
