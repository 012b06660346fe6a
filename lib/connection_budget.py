"""The database connections the API's settings may open, against the server's limit.

Framework-free: callers pass the URL, the worker and thread counts in.
"""
import logging
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from lib.db import engine_options
from lib.db_errors import describe_database_error

logger = logging.getLogger(__name__)

# The fetch job (or the scheduler's run): its session and its lock's connection.
JOB_CONNECTIONS = 2
# The check is best-effort: a database that is down or frozen must not hold
# up the start for longer than this.
CHECK_TIMEOUT_SECONDS = 1.0
LIMIT_QUERY = "SELECT @@GLOBAL.max_connections, @@SESSION.max_user_connections"


@dataclass(frozen=True)
class ConnectionPlan:
    """The most connections one API replica and the fetch job may hold at once.

    Each request thread holds one connection of the request pool, which keeps
    it open when the request ends. With a CSV export pool (MySQL), a thread
    that streams an export holds one more of that pool, while the request
    pool keeps the one it returned: a worker whose threads all export at
    once holds twice its threads (it keeps one export connection idle after).
    """

    workers: int
    threads: int
    exports: bool

    @property
    def per_worker(self) -> int:
        return self.threads * (2 if self.exports else 1)

    @property
    def total(self) -> int:
        return self.workers * self.per_worker + JOB_CONNECTIONS


@dataclass(frozen=True)
class ConnectionLimit:
    """The fewest connections the server lets this user open, and the variable that says so."""

    value: int
    variable: str


def connection_limit(max_connections: int, max_user_connections: int) -> ConnectionLimit:
    """Return the tighter of the server's and the user's limit (0 or less: the user has none).

    The session value of max_user_connections is the account's own
    MAX_USER_CONNECTIONS where it has one, else the server-wide value.
    """
    if 0 < max_user_connections < max_connections:
        return ConnectionLimit(max_user_connections, "max_user_connections")
    return ConnectionLimit(max_connections, "max_connections")


def read_connection_limit(url: str) -> ConnectionLimit | None:
    """Ask the MySQL or MariaDB server of ``url`` for its connection limit; None for SQLite.

    Waits at most about CHECK_TIMEOUT_SECONDS to connect and for the answer.
    Raises SQLAlchemyError when the server cannot or will not answer.
    """
    if make_url(url).get_backend_name() not in ("mysql", "mariadb"):
        return None
    engine = create_engine(url, **engine_options(url, timeout=CHECK_TIMEOUT_SECONDS))
    try:
        with engine.connect() as connection:
            row = connection.execute(text(LIMIT_QUERY)).one()
    finally:
        engine.dispose()
    return connection_limit(int(row[0]), int(row[1]))


def budget_warning(plan: ConnectionPlan, limit: ConnectionLimit) -> str | None:
    """Return the line to log when ``plan`` may open more connections than ``limit``; else None."""
    if plan.total <= limit.value:
        return None
    per_worker = (f"{plan.per_worker} ({plan.threads} threads, each with a request and "
                  f"a CSV export connection)" if plan.exports
                  else f"{plan.per_worker} (one per thread)")
    return (f"connection budget: {plan.workers} workers x {per_worker} + {JOB_CONNECTIONS} "
            f"for the fetch job = {plan.total} database connections may be open at once, "
            f"more than the {limit.value} the server allows ({limit.variable}); under load "
            f"requests will answer 503 and the fetch job may be refused: lower "
            f"GUNICORN_WORKERS or GUNICORN_THREADS, or raise {limit.variable} "
            f"(each more API replica adds {plan.workers * plan.per_worker})")


def warn_if_over_budget(url: str, plan: ConnectionPlan) -> None:
    """Log one warning when ``plan`` may open more connections than ``url``'s server allows.

    Best-effort: a database that does not answer within CHECK_TIMEOUT_SECONDS,
    or refuses the question (a MySQL-speaking proxy may), is left unchecked
    (one INFO line), as the API starts and answers 503 until it is back
    whatever its settings.
    """
    try:
        limit = read_connection_limit(url)
    except SQLAlchemyError as exc:
        logger.info("connection budget not checked: %s", describe_database_error(exc))
        return
    except (TypeError, ValueError):  # an answer that is no number (NULL, text)
        logger.info("connection budget not checked: the server's limits are not numbers")
        return
    warning = budget_warning(plan, limit) if limit is not None else None
    if warning:
        logger.warning("%s", warning)
