"""Configure logging once per program: stderr plus a rotating file in LOG_DIR."""
import logging
from pathlib import Path

from concurrent_log_handler import ConcurrentRotatingFileHandler

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
_HANDLER_MARK = "_financial_log_handler"


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
    console.setFormatter(logging.Formatter(LOG_FORMAT) if console_tracebacks
                         else _OneLineFormatter(LOG_FORMAT))
    log_file = ConcurrentRotatingFileHandler(
        log_path, maxBytes=max_bytes, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    log_file.setFormatter(logging.Formatter(LOG_FORMAT))
    for handler in (console, log_file):
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    return log_path


class _OneLineFormatter(logging.Formatter):
    """Format a record without its traceback (the log file keeps that)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
