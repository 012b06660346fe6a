"""Docker HEALTHCHECK: exit 0 when GET /api/health answers 200 on gunicorn's port.

Standard library only and no app import, since Docker runs it every few
seconds. http.client rather than urllib, which would obey HTTP(S)_PROXY.
"""
import http.client
import os
import sys

TIMEOUT_SECONDS = 4


def health_port() -> int:
    """Return the port from GUNICORN_BIND (host:port), else PORT, else 8000."""
    port = os.environ.get("GUNICORN_BIND", "").strip().rpartition(":")[2]
    if not port.isdigit():
        port = os.environ.get("PORT", "").strip() or "8000"
    return int(port)


def main() -> int:
    connection = http.client.HTTPConnection("127.0.0.1", health_port(), timeout=TIMEOUT_SECONDS)
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
