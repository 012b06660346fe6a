"""GET /api/health: tells load balancers and operators whether the database and its schema serve."""
import logging
import threading
from dataclasses import dataclass
from time import monotonic

from flask import Flask, current_app
from flask_restx import Resource, fields
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from app.api.docs import (
    ETAG_HEADER, NOT_MODIFIED, RETRY_AFTER_HEADER, NullableString, error_responses, info_model,
    json_example, namespace, require_every_key,
)
from app.envelope import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS
from app.extensions import db
from app.metrics import record_database_error
from app.routes import HEALTH_PATH
from lib.db_errors import DATABASE_ERRORS, describe_database_error, is_schema_error
from lib.outage_log import OUTAGE_LINE_INTERVAL_SECONDS, OutageLog
from lib.schema import (
    MIGRATE_COMMAND, migration_revisions, name_revisions, schema_state,
)

logger = logging.getLogger(__name__)

ns = namespace("health", "Liveness of the API, its database and the database's schema")

health_model = ns.model("Health", require_every_key({
    "status": fields.String(enum=["ok", "unavailable"],
                            description="ok: the API can answer; unavailable: it cannot, "
                                        "info.error says why"),
    "database": NullableString(enum=["ok", "unreachable"],
                               description="Whether the database answered the check; null "
                                           "when the API itself did not answer, and nginx "
                                           "in front of it did"),
    "schema": NullableString(
        enum=["current", "newer", "missing", "behind", "mixed"],
        description="current: the migrations' newest revision; newer: one this release does "
                    "not know (a newer release migrated it); missing or behind: run the "
                    f"migrations ({MIGRATE_COMMAND}); mixed: a revision the migrations know "
                    "beside one they do not, on which new containers and the fetch job stop: "
                    "correct the alembic_version table, so that it holds one revision; null "
                    "when the database did not answer, or the API itself did not and nginx in "
                    "front of it did"),
    "info": fields.Nested(info_model),
}))
NO_STORE = {"Cache-Control": "no-store"}
UNAVAILABLE = {**NO_STORE, "Retry-After": RETRY_AFTER_SECONDS}
# The schema states health answers with a 503: an operator must act (a missing or
# behind schema fails the answers that read it; a mixed history stops new containers).
UNUSABLE_SCHEMAS = ("missing", "behind", "mixed")
# Seconds one probe of the database answers every health check of the process.
PROBE_SECONDS = 1.0
_FAILURE_LOG = "health_failure_log"
_PROBE = "health_probe"


def health_body(database: str, schema: str | None, error: str = "") -> dict:
    status = "unavailable" if error else "ok"
    return {"status": status, "database": database, "schema": schema, "info": {"error": error}}


def stored_revisions() -> set[str]:
    """Return the database's migration revisions: none when it was never migrated."""
    try:
        return set(db.session.scalars(text("SELECT version_num FROM alembic_version")))
    except (*DATABASE_ERRORS, ProgrammingError) as exc:
        if is_schema_error(exc):  # no revision table
            return set()
        raise


@dataclass(frozen=True)
class ProbeResult:
    """What one probe found: the schema's revisions, or why the database did not answer."""

    versions: frozenset[str] = frozenset()
    failure: str | None = None


class SharedProbe:
    """Probe the database at most once per ``seconds``; answer every check in between with it.

    Load balancers poll health often, and the check is exempt from the rate
    limit so that none is refused: its cost is bounded instead, to one
    query per process per window whatever the rate of checks, while a
    failure still shows within the window. One probe runs at a time; the
    checks arriving meanwhile wait for its result rather than query too.
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self._result: ProbeResult | None = None
        self._taken_at = 0.0

    def result(self) -> ProbeResult:
        """Return the last probe's result, probing first when it is older than the window."""
        with self._lock:
            if self._result is None or monotonic() - self._taken_at >= self._seconds:
                self._result = _probe_database()
                self._taken_at = monotonic()
            return self._result


def _probe_database() -> ProbeResult:
    """Read the schema's revisions; count a database error once per probe that meets it."""
    try:
        return ProbeResult(frozenset(stored_revisions()))
    except DATABASE_ERRORS as exc:
        record_database_error()
        return ProbeResult(failure=describe_database_error(exc))


def schema_message(state: str, versions: set[str], directory: str) -> str:
    """Say what is wrong with the schema and how to fix it (``directory``: the migrations)."""
    if state == "mixed":
        known = versions & migration_revisions(directory)[1]
        return (f"the database's migration history is mixed: {name_revisions(known)}, which "
                f"the migrations know, beside {name_revisions(versions - known)}, which they "
                "do not; new containers and the fetch job stop on it: correct the "
                "alembic_version table, so that it holds one revision")
    if state == "missing":
        problem = "the database has no schema"
    else:
        problem = f"the database schema is behind, at revision {', '.join(sorted(versions))}"
    return f"{problem}: run the migrations ({MIGRATE_COMMAND})"


def init_health_check(app: Flask) -> None:
    """Give ``app`` its shared probe and the log of failed checks, made once with the app.

    A load balancer polls every few seconds, outages included: it gets one
    line per OUTAGE_LINE_INTERVAL_SECONDS with the count, not one per poll,
    and one line when a check passes again.
    """
    app.extensions[_PROBE] = SharedProbe(PROBE_SECONDS)
    app.extensions[_FAILURE_LOG] = OutageLog(
        OUTAGE_LINE_INTERVAL_SECONDS, headline="health check failed",
        refusals="checks answered 503", log=logger, back="health check passes again")


def log_failed_check(description: str) -> None:
    """Log a failed check through the app's failure log (``init_health_check``)."""
    current_app.extensions[_FAILURE_LOG].failed(description)


@ns.route("")
class Health(Resource):
    @ns.doc(id="get_health", responses={
        "200": ("The database answers and its schema is current (or newer: a newer release "
                "migrated it)", health_model,
                {**json_example(health_body("ok", "current")), "headers": ETAG_HEADER}),
        "304": NOT_MODIFIED,
        **error_responses(HEALTH_PATH, paginated=False, rate_limited=False),
        "503": ("The database does not answer, or its schema is missing, behind the "
                "migrations or of a mixed history; info.error says which. Behind nginx, "
                "also the API not answering (database and schema null)", health_model,
                {**json_example(health_body("unreachable", None, DATABASE_UNAVAILABLE)),
                 "headers": RETRY_AFTER_HEADER}),
    })
    def get(self):
        """Check that the API runs, its database answers and its schema is up to date.

        Never rate limited, so that no poll is refused; cheap to poll
        instead: each API process reads the database (one query of a one-row
        table, the migrations' revision) at most once a second and answers
        the checks of that second with what it found. A failure shows
        within a second.
        """
        probe = current_app.extensions[_PROBE].result()
        if probe.failure is not None:
            log_failed_check(probe.failure)
            return health_body("unreachable", None, DATABASE_UNAVAILABLE), 503, UNAVAILABLE
        versions = set(probe.versions)
        directory = current_app.extensions["migrate"].directory
        state = schema_state(versions, directory)
        if state in UNUSABLE_SCHEMAS:
            message = schema_message(state, versions, directory)
            log_failed_check(message)
            return health_body("ok", state, message), 503, UNAVAILABLE
        current_app.extensions[_FAILURE_LOG].succeeded()
        return health_body("ok", state), 200, NO_STORE
