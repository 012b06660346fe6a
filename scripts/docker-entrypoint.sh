#!/bin/sh
# Container entrypoint: wait for the database and apply migrations, then exec
# the command (gunicorn by default) so it runs as PID 1 and receives signals.
set -eu

# From the script's own place, so a checkout outside /app works the same way.
cd "$(dirname "$0")/.."

python -m scripts.prestart --timeout "${DB_WAIT_TIMEOUT:-60}"
exec "$@"
