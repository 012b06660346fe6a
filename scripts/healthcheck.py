"""Docker HEALTHCHECK: exit 0 when GET /api/health answers 200 on gunicorn's port.

Standard library only and no app import, since Docker runs it every few
seconds. http.client rather than urllib, which would obey HTTP(S)_PROXY.
"""
import http.client
import os
import sys

# /api/health answers 503 on a frozen database after up to two of the app's
# DATABASE_TIMEOUT (a pooled connection's ping, then a fresh connection): the
# check waits that long plus a margin, so Docker records the 503, not a timeout.
# The image's HEALTHCHECK --timeout allows for it at DATABASE_TIMEOUT's default.
DATABASE_TIMEOUT_DEFAULT = 2.0
MARGIN_SECONDS = 2.0


def timeout_seconds() -> float:
    """Return how long to wait for /api/health: twice DATABASE_TIMEOUT, plus a margin."""
    try:
        database_timeout = float(os.environ.get("DATABASE_TIMEOUT", "").strip())
    except ValueError:  # blank, or a value the app itself refuses
        database_timeout = DATABASE_TIMEOUT_DEFAULT
    if not database_timeout > 0:
        database_timeout = DATABASE_TIMEOUT_DEFAULT
    return 2 * database_timeout + MARGIN_SECONDS


def health_port() -> int:
    """Return the port from GUNICORN_BIND (host:port), else PORT, else 8000."""
    port = os.environ.get("GUNICORN_BIND", "").strip().rpartition(":")[2]
    if not port.isdigit():
        port = os.environ.get("PORT", "").strip() or "8000"
    return int(port)


def main() -> int:
    connection = http.client.HTTPConnection("127.0.0.1", health_port(), timeout=timeout_seconds())
    try:
        connection.request("GET", "/api/health")
        status = connection.getresponse().status
    except OSError as exc:
        print(f"unhealthy: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"unhealthy: /api/health answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
