"""Gunicorn settings for the API, tuned from the environment.

Gunicorn loads this file itself (``gunicorn --config conf/gunicorn.conf.py``);
the application's own settings stay in conf/settings.py. A blank variable
counts as unset, so an empty line copied from .env.example keeps the default.
"""
import os


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _usable_cpus() -> int:
    # The CPUs this process may run on (a container's cpuset), not the host's count.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# All interfaces, as nginx reaches the API over the container network; the
# compose files publish only nginx's port. Elsewhere, bind the address nginx
# uses (GUNICORN_BIND=127.0.0.1:8000), never one clients reach directly.
bind = [_env("GUNICORN_BIND", f"0.0.0.0:{_env('PORT', '8000')}")]

# Each worker holds its own SQLAlchemy pool: workers x threads x replicas
# must stay below MySQL's max_connections (151 by default).
workers = _env_int("GUNICORN_WORKERS", 2 * _usable_cpus() + 1)
# Threaded workers, whatever the thread count: a connection that sends
# nothing is parked in the worker's poller (after at most 5 s in a thread),
# so a handful of idle clients cannot take every worker, as they take sync
# workers until the 30 s timeout kills them. gunicorn still must not face
# clients directly: nginx buffers whole requests (see the README).
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 4)
# nginx gives up after as long (proxy_read_timeout in conf/nginx.conf).
timeout = 30
# Below compose's stop_grace_period, so in-flight requests finish before SIGKILL.
graceful_timeout = 25
# Longer than nginx's upstream keepalive_timeout, so nginx closes idle
# connections first and never reuses one gunicorn is closing.
keepalive = 5

accesslog = "-"
errorlog = "-"
loglevel = _env("LOG_LEVEL", "info").lower()
access_log_format = (
    '%(h)s "%({x-forwarded-for}i)s" %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
)

# Whose X-Forwarded-* headers to trust. The compose files set "*": only nginx
# can reach the unpublished API port there.
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The heartbeat file is touched constantly; on a container's overlay
# filesystem that can stall workers, /dev/shm is memory-backed.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Worker counts come from the environment and a restart applies them; no
# runtime control socket (gunicornc), whose default path lies under $HOME,
# which the image's user does not have.
control_socket_disable = True
