"""The database schema's Alembic state: its revision, compared with the migration scripts.

Framework-free: callers pass engines and the migrations' directory in.
"""
import functools
from collections.abc import Set

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

MIGRATE_COMMAND = "flask --app app db upgrade"
# Filled in with unknown_revision's answer (name_revisions): "revision 0099",
# "revisions 0099 and 00aa".
NEWER_SCHEMA = ("the database's schema is at %s, which this release does not know "
                "(a newer release migrated it): using it as it is")


def schema_revisions(engine: Engine) -> frozenset[str]:
    """Return the Alembic revisions the database's schema is at: one row, or none (yet).

    Every row is read: Alembic keeps one per branch, and a row left beside
    the current one (a hand edit, a restore) must not be read past.
    Raises the database's error when the connection broke or timed out: a
    stalled server would only hold the migration's connection as long again.
    """
    try:
        with engine.connect() as connection:
            return frozenset(connection.execute(
                text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError as exc:  # no such table, or no database: migrating will say which
        if exc.connection_invalidated:
            raise
        return frozenset()


def unknown_revision(engine: Engine, directory: str) -> str | None:
    """Name the schema's revisions when the migrations in ``directory`` know none of them.

    A newer release migrated the database (a rolling upgrade, a rollback):
    Alembic cannot upgrade from a revision it has no script for, so this
    release must leave the schema alone and work on it as it is. None when
    the schema is missing, current or behind, and when a revision these
    scripts know stands beside one they do not: that history is no newer
    release's ("mixed"), and the upgrade stops on it, Alembic saying which
    revision.
    """
    revisions = schema_revisions(engine)
    if not revisions or revisions & migration_revisions(directory)[1]:
        return None
    return name_revisions(revisions)


def name_revisions(revisions: Set[str]) -> str:
    """Name ``revisions`` in a sentence: "revision 0099", "revisions 0099, 00aa and 00bb".

    The list is spelled out so that a "which" after it does not read as the
    last one's alone.
    """
    *others, last = sorted(revisions)
    if not others:
        return f"revision {last}"
    return f"revisions {', '.join(others)} and {last}"


@functools.cache
def migration_revisions(directory: str) -> tuple[frozenset[str], frozenset[str]]:
    """Return the head revisions and every revision of the Alembic scripts in ``directory``.

    Read once per process: the scripts do not change while it runs.
    """
    # Imported here: the fetch job, which needs Alembic only to migrate, imports this module.
    from alembic.script import ScriptDirectory
    scripts = ScriptDirectory(directory)
    return (frozenset(scripts.get_heads()),
            frozenset(script.revision for script in scripts.walk_revisions()))


def schema_state(versions: set[str], directory: str) -> str:
    """Compare the database's Alembic ``versions`` with the scripts in ``directory``.

    Returns "current" (at the heads), "missing" (never migrated), "behind"
    (older revisions: run the migrations), "newer" (revisions these
    scripts do not know, e.g. a newer release migrated the database) or
    "mixed" (a revision they know beside one they do not: no release's
    history, on which Alembic cannot plan an upgrade).
    """
    heads, known = migration_revisions(directory)
    if not versions:
        return "missing"
    if versions == heads:
        return "current"
    if versions <= known:
        return "behind"
    return "mixed" if versions & known else "newer"
