"""Unbound Flask extensions; ``create_app`` binds each with ``init_app``."""
from flask_caching import Cache
from flask_cors import CORS
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from financial.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
cache = Cache()
cors = CORS()
