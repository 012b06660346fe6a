"""GET /api/health: tells load balancers and operators whether the database answers."""
import logging

from flask_restx import Resource, fields
from sqlalchemy import text

from app.api.docs import info_model, namespace
from app.envelope import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS
from app.extensions import db
from app.metrics import record_database_error
from lib.db import DATABASE_ERRORS, describe_database_error

logger = logging.getLogger(__name__)

ns = namespace("health", "Liveness of the API and its database")

health_model = ns.model("Health", {
    "status": fields.String(example="ok", description='"ok" or "unavailable"'),
    "database": fields.String(example="ok", description='"ok" or "unreachable"'),
    "info": fields.Nested(info_model),
})
NO_STORE = {"Cache-Control": "no-store"}


@ns.route("")
class Health(Resource):
    @ns.response(200, "The database answers", health_model)
    @ns.response(503, "The database does not answer", health_model)
    def get(self):
        """Check that the API runs and its database answers a trivial query."""
        try:
            db.session.execute(text("SELECT 1"))
        except DATABASE_ERRORS as exc:
            logger.error("health check failed: %s", describe_database_error(exc))
            record_database_error()
            body = {"status": "unavailable", "database": "unreachable",
                    "info": {"error": DATABASE_UNAVAILABLE}}
            return body, 503, {**NO_STORE, "Retry-After": RETRY_AFTER_SECONDS}
        return {"status": "ok", "database": "ok", "info": {"error": ""}}, 200, NO_STORE
