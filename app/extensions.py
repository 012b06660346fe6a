"""Unbound Flask extensions; ``create_app`` binds each with ``init_app``.

Flask-Migrate is bound by ``app.register_migrations``, which imports it.
"""
from flask_caching import Cache
from flask_cors import CORS
from flask_sqlalchemy import SQLAlchemy

from financial.models import Base

db = SQLAlchemy(model_class=Base)

# The CSV export's engine (a Flask-SQLAlchemy bind) where the database has a read
# timeout (MySQL): the server sorts every matching row, a million in seconds,
# before it sends the first, longer than DATABASE_TIMEOUT allows one answer.
# Bounded by gunicorn's worker timeout (conf/gunicorn.conf.py).
EXPORT_BIND = "export"
EXPORT_READ_TIMEOUT_SECONDS = 30.0

cache = Cache()
cors = CORS()
