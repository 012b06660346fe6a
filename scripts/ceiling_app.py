"""The benchmark's ceiling: a bare Flask-RESTX app that answers a fixed JSON body.

``scripts/benchmark.py`` runs it under the same gunicorn settings as the API
(``gunicorn --config conf/gunicorn.conf.py 'scripts.ceiling_app:create_app()'``),
so the API's throughput can be given as a share of what the framework and the
server can do at all on the same machine, in the same run.

``create_rate_limited_app()`` is the same app behind the API's own rate limit
(``app/rate_limits.py``, Flask-Limiter): the API counts every request the same
way, so its ratio to the ceiling is what the rate limit alone leaves.
"""
import os

from flask import Blueprint, Flask
from flask_restx import Api, Resource

from app.rate_limits import register_rate_limits

BODY = {"data": {"symbol": "IBM", "average_daily_open_price": 123.45,
                 "average_daily_close_price": 234.56, "average_daily_volume": 1000000},
        "info": {"error": ""}}


def create_app() -> Flask:
    """Build the ceiling app: one RESTX resource at /api/ceiling."""
    app = Flask(__name__)
    blueprint = Blueprint("api", __name__, url_prefix="/api")
    api = Api(blueprint, doc=False)

    @api.route("/ceiling")
    class Ceiling(Resource):
        def get(self):
            return BODY

    app.register_blueprint(blueprint)
    return app


def create_rate_limited_app() -> Flask:
    """Build the ceiling app behind the API's rate limit (RATE_LIMIT, RATELIMIT_STORAGE_URI)."""
    app = create_app()
    app.config.update(RATE_LIMIT=os.environ["RATE_LIMIT"],
                      RATELIMIT_STORAGE_URI=os.environ.get("RATELIMIT_STORAGE_URI", "memory://"))
    register_rate_limits(app)
    return app
