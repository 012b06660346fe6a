"""A migration's own refusal to change what the database holds."""
from alembic.util import CommandError


class MigrationRefused(CommandError):
    """A migration found rows it would have to drop: nothing is migrated.

    A CommandError, so ``flask db upgrade`` prints it as one line and exits
    1; its message says what to do, so no hint about the history is added.
    """
