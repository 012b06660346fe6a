"""Unbound Flask extensions; ``create_app`` binds each with ``init_app``.

Flask-Migrate is bound by ``app.register_migrations``, which imports it.
"""
from flask_caching import Cache
from flask_cors import CORS
from flask_sqlalchemy import SQLAlchemy

from financial.models import Base

db = SQLAlchemy(model_class=Base)
cache = Cache()
cors = CORS()
