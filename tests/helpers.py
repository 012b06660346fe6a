"""Helpers the tests and their fixtures share: building apps and test databases."""
import uuid
from collections.abc import Iterator

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import cache, db
from financial.models import FetchRun, FetchRunSymbol, FinancialData


def build_app(database_url: str, log_dir, **overrides) -> Flask:
    """Create a testing app on ``database_url`` with logs in ``log_dir``."""
    settings = {"SQLALCHEMY_DATABASE_URI": database_url, "LOG_DIR": str(log_dir),
                "CACHE_TYPE": "SimpleCache", **overrides}
    return create_app("testing", overrides=settings)


def migrate_database(database_url: str, log_dir) -> None:
    """Bring the schema of ``database_url`` up to date with the migrations."""
    application = build_app(database_url, log_dir)
    with application.app_context():
        upgrade()
        db.engine.dispose()


def sqlite_url(folder) -> str:
    """Return the URL of a SQLite file in ``folder``."""
    return f"sqlite:///{folder / 'financial.db'}"


def create_mysql_database(server_url: str) -> str:
    """Create an empty database of a unique name on the server; return its URL."""
    name = f"test_financial_{uuid.uuid4().hex[:10]}"
    server = create_engine(make_url(server_url).set(database=""))
    try:
        with server.begin() as connection:
            connection.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    finally:
        server.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_mysql_database(database_url: str) -> None:
    """Drop the database ``database_url`` names, if it exists."""
    url = make_url(database_url)
    server = create_engine(url.set(database=""))
    try:
        with server.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {url.database}"))
    finally:
        server.dispose()


def emptied_app(application: Flask) -> Iterator[Flask]:
    """Yield ``application`` with empty tables and cache; clean up after the test."""
    with application.app_context():
        for model in (FetchRunSymbol, FetchRun, FinancialData):
            db.session.execute(delete(model))
        db.session.commit()
        cache.clear()
    yield application
    with application.app_context():
        cache.clear()
        db.session.remove()
        db.engine.dispose()
