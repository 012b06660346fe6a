"""Unbound Flask extensions; ``create_app`` binds each with ``init_app``.

Flask-Migrate is bound by ``app.register_migrations``, which imports it, and
Flask-CORS by ``app.serving.register_cors``: the fetch job's app needs neither.
"""
from flask_caching import Cache
from flask_sqlalchemy import SQLAlchemy

from financial.models import Base

db = SQLAlchemy(model_class=Base)
cache = Cache()
