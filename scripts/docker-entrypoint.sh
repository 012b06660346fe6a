#!/bin/sh
# Container entrypoint: wait for the database and apply migrations, then exec
# the command (gunicorn by default) so it runs as PID 1 and receives signals.
# A setting that cannot work stops here, as does a database that refuses it
# (wrong password, unknown database: prestart's status 2). A database that does
# not answer in time (prestart's status 3) does not: the command starts anyway (the API
# answers 503 until the database is back) while prestart keeps waiting in the
# background and migrates as soon as it answers; a refusal then stops the command.
set -eu

# From the script's own place, so a checkout outside /app works the same way.
cd "$(dirname "$0")/.."

# A stop during the wait (SIGTERM from `docker stop`, SIGINT) ends prestart
# and the start: the shell waits for prestart in the background because it
# runs a trap only between commands, and as PID 1 it ignores a signal it has
# no trap for; killed alone, it would leave prestart running.
stopping=""
python -m scripts.prestart --timeout "${DB_WAIT_TIMEOUT:-60}" &
prestart=$!
trap 'stopping=1; kill -TERM "$prestart" 2>/dev/null || true' TERM INT
status=0
wait "$prestart" || status=$?
trap - TERM INT
if [ -n "$stopping" ]; then
  wait "$prestart" 2>/dev/null || true
  echo "entrypoint: stopped while preparing the database" >&2
  exit 143
fi
if [ "$status" -eq 3 ]; then
  echo "entrypoint: starting without the database; migrating once it answers" >&2
  # A week: far longer than any outage worth waiting out unattended. A database
  # that answers at last but refuses the settings (status 2) stops the command,
  # which the exec below puts in this shell's place ($$): the container stops
  # as it would have at the start, and its next start reports the refusal.
  command_pid=$$
  (
    late=0
    python -m scripts.prestart --timeout 604800 || late=$?
    if [ "$late" -eq 2 ]; then
      echo "entrypoint: the database refused the configuration; stopping" >&2
      kill -TERM "$command_pid" 2>/dev/null || true
    fi
  ) &
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi
exec "$@"
