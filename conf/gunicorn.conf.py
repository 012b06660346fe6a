"""Gunicorn settings for the API, tuned from the environment.

Gunicorn loads this file itself (``gunicorn --config conf/gunicorn.conf.py``);
the application's own settings stay in conf/settings.py. Both read the
environment and the checkout's .env. A blank variable counts as unset, so
an empty line copied from .env.example keeps the default.
"""
import atexit
import os
import re
import resource
import shutil
import tempfile

from dotenv import load_dotenv

# The checkout's .env, as flask and get_raw_data.py read it, under the
# environment, which wins. The image holds no .env (.dockerignore): in a
# container the environment compose passes is everything.
load_dotenv(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), ".env"))


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _env_int(name: str, default: int) -> int:
    """Read a count of 1 or more in ASCII digits, as conf/settings.py reads its numbers.

    A bad one stops gunicorn with one line: it would print its own traceback
    of this file for a ValueError, and take "1_0" or other scripts' digits.
    """
    raw = _env(name, str(default))
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        raise SystemExit(f"Error: {name} must be a whole number of 1 or more, got {raw!r}")
    return int(raw)


def _usable_cpus() -> int:
    # The CPUs this process may run on (a container's cpuset), not the host's count.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# All interfaces, as nginx reaches the API over the container network; the
# compose files publish only nginx's port. Elsewhere, bind the address nginx
# uses (GUNICORN_BIND=127.0.0.1:8000), never one clients reach directly.
bind = [_env("GUNICORN_BIND", f"0.0.0.0:{_env('PORT', '8000')}")]

# Each worker holds its own SQLAlchemy pools, up to two connections per
# thread on MySQL (a request's and a CSV export's): on_starting warns when
# the workers may open more than the server allows (its max_connections).
workers = _env_int("GUNICORN_WORKERS", 2 * _usable_cpus() + 1)
# Threaded workers, whatever the thread count: a connection that sends
# nothing is parked in the worker's poller (after at most 5 s in a thread),
# so a handful of idle clients cannot take every worker, as they take sync
# workers until the 30 s timeout kills them. gunicorn still must not face
# clients directly: nginx buffers whole requests (see the README).
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 4)
# Connections a worker holds at once (clients', keep-alive ones included), each
# a file descriptor, as are the worker's own: its log and metrics files, pipes,
# a poller per thread, the database's and Redis's connections. gunicorn's
# accept() meeting the open files limit (EMFILE) kills the worker with every
# request it serves, and the next one under the same burst: a worker that
# stops accepting first leaves the rest waiting in the listen backlog.
_DESCRIPTORS_PER_WORKER = 24
_DESCRIPTORS_PER_THREAD = 8
_GUNICORN_WORKER_CONNECTIONS = 1000  # gunicorn's default
_FEW_CONNECTIONS = 100


def _connections_within_open_files() -> int:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return _GUNICORN_WORKER_CONNECTIONS
    room = limit - _DESCRIPTORS_PER_WORKER - _DESCRIPTORS_PER_THREAD * threads
    return max(threads, min(_GUNICORN_WORKER_CONNECTIONS, room))


worker_connections = _connections_within_open_files()
# Above nginx's 4 KB (the request line conf/nginx.conf lets through), so a
# request line too long is refused by nginx in the API's envelope, never by
# gunicorn's own HTML page.
limit_request_line = 8190
# All the header bytes nginx reads and passes on: its first 1 KB buffer and
# large_client_header_buffers (4 x 8 KB) in conf/nginx.conf.
_NGINX_HEADER_BYTES = (1 + 4 * 8) * 1024
# gunicorn's most header fields (its default is 100): as many as nginx's
# headers hold at 4 bytes each ("a:" and CRLF), so nginx refuses first, in the
# envelope. No more: from a client that reaches it directly, past nginx,
# gunicorn may buffer fields x field size of headers (here about 290 MB).
limit_request_fields = _NGINX_HEADER_BYTES // 4
# One field may hold them all, with nginx's own entry and the name: nginx
# joins a client's X-Forwarded-For lines into one, its own address appended.
limit_request_field_size = _NGINX_HEADER_BYTES + 1024
# Threaded workers tell the arbiter they are alive whatever their threads do:
# this bounds a stuck worker, not a request; nginx's proxy_read_timeout does.
timeout = 30
# Below compose's stop_grace_period, so in-flight requests finish before SIGKILL.
graceful_timeout = 25
# Longer than nginx's upstream keepalive_timeout, so nginx closes idle
# connections first and never reuses one gunicorn is closing.
keepalive = 5

# No access log: the app logs one line per request itself, with its
# request ID, client address and duration (app/request_log.py).
accesslog = None
errorlog = "-"
loglevel = _env("LOG_LEVEL", "info").lower()

# Whose X-Forwarded-* headers to trust. The compose files set "*": only nginx
# can reach the unpublished API port there.
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# And of those, only X-Forwarded-Proto, which nginx sets (replacing the
# client's). gunicorn's default also reads X-Forwarded-Ssl and
# X-Forwarded-Protocol, which nginx passes on as the client wrote them: one
# contradicting nginx's got gunicorn's own HTML 400 instead of the answer.
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
# No header sets the WSGI environment: gunicorn's default takes SCRIPT_NAME from
# a header of those addresses, which nothing in front of it sets, and a client's
# would prefix every path the app writes (a page's Link, kept in the answer cache
# for every client after it; the OpenAPI document's basePath, kept by the worker)
# and route /x/metrics to /metrics.
forwarder_headers = ""

# The heartbeat file is touched constantly; on a container's overlay
# filesystem that can stall workers, /dev/shm is memory-backed.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Worker counts come from the environment and a restart applies them; no
# runtime control socket (gunicornc), whose default path lies under $HOME,
# which the image's user does not have.
control_socket_disable = True


def on_starting(server):
    """Give the workers a metrics folder, then check that the app can be built.

    Building the app once in the master turns a setting that cannot work
    (e.g. a malformed DATABASE_URL) into one line ("Error: ...") before any
    worker starts, instead of a traceback from every worker. Workers then
    inherit the imported code: restart gunicorn, not HUP it, to deploy code.
    """
    _share_metrics_between_workers()
    from gunicorn.util import import_app

    from conf.settings import ConfigError
    try:
        app = import_app(server.app.app_uri)
    except ConfigError as exc:
        raise RuntimeError(str(exc)) from None
    _check_connection_budget(server, app)
    _check_open_files(server)
    _build_the_exchange_calendar()


def _check_connection_budget(server, app):
    # Once, in the master, with the counts gunicorn will use (its command
    # line may override this file's): workers that may open more database
    # connections than the server allows answer 503 under load instead. An
    # app without a database (the benchmark's ceiling apps) has none to check.
    url = app.config.get("SQLALCHEMY_DATABASE_URI")
    if url is None:
        return
    from app.api.export import EXPORT_BIND
    from lib.connection_budget import ConnectionPlan, warn_if_over_budget
    exports = EXPORT_BIND in app.config.get("SQLALCHEMY_BINDS", {})
    warn_if_over_budget(url, ConnectionPlan(server.cfg.workers, server.cfg.threads, exports))


def _check_open_files(server):
    # A limit that leaves a worker room for few connections makes clients
    # wait in the backlog while the host idles: say so once, at start.
    if server.cfg.worker_connections < _FEW_CONNECTIONS:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        server.log.warning(
            "the open files limit (%d) leaves each worker room for %d connections at once; "
            "the others wait: raise it (ulimit -n; in compose, ulimits: nofile)",
            limit, server.cfg.worker_connections)


def _build_the_exchange_calendar():
    # Built once here, before the fork, every worker has it: built on a
    # worker's first /api/symbols instead, it delayed that request by seconds.
    from financial.freshness import nyse_sessions
    nyse_sessions()


def _share_metrics_between_workers():
    # Each worker writes its metrics to files there and /metrics adds them
    # up (prometheus_client's multiprocess mode, which it picks when first
    # imported: so before the app is). A fresh folder per start, so no count
    # of an earlier run is added; not a setting, as a blank value copied
    # from .env would put `flask run` in that mode with no folder.
    folder = _memory_backed_folder("api-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    # Removed however the master exits: stopped, unable to start (its port
    # taken, a bad setting) or stopped after a HUP, which runs this file
    # again, so a hook or a global of it would have forgotten the folder.
    # Workers inherit the registration; only the master that made it removes it.
    atexit.register(_remove_folder, folder, os.getpid())


def _remove_folder(folder, owner):
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def _memory_backed_folder(prefix):
    # The metric files are mapped into the workers' memory: on a full disk,
    # writing a page of one kills the worker with SIGBUS, and each worker
    # that replaces it, so a full disk would stop the API. /dev/shm is
    # memory, out of reach of what fills the disk (logs, data); the system's
    # temporary folder only where there is none.
    if os.path.isdir("/dev/shm"):
        try:
            return tempfile.mkdtemp(prefix=prefix, dir="/dev/shm")
        except OSError:
            pass
    return tempfile.mkdtemp(prefix=prefix)


def child_exit(server, worker):
    """Drop the live gauges of a worker that exited; its counters still count."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
