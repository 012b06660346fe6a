# syntax=docker/dockerfile:1
# Stages: base -> deps (runtime venv) -> runtime-venv (pip removed) and
# dev-deps (+ test/lint tools) -> dev (docker-compose.dev.yml) and lint
# (flake8, import-linter, mypy gate) -> production (the default target).
# production copies a marker from lint, so it is never built from code that
# fails flake8, the import-linter contracts or mypy (setup.cfg).
# Packages come only from the hashed lock files (requirements*.lock).

FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app \
       --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app

# Only the lock files enter these layers, so a code change reuses them.
FROM base AS deps
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

# The runtime needs no installer: pip and setuptools leave its virtualenv.
FROM deps AS runtime-venv
RUN pip uninstall --yes pip setuptools

FROM deps AS dev-deps
COPY requirements-dev.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements-dev.lock

FROM dev-deps AS dev
COPY . .
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["flask", "--app", "app", "run", "--debug", "--host", "0.0.0.0", "--port", "8000"]

FROM dev-deps AS lint
COPY . .
RUN flake8 . && lint-imports && mypy && touch /tmp/lint.passed

FROM base AS production
# The base image's own Python gives up its installer too (its pip is on the PATH).
# Its standard library comes without bytecode (the base image removes it to stay
# small), so each process would compile what it imports: with the code's own, about
# 0.3 s of CPU for the app or a fetch run, 0.1 s for each health check. Compiled
# here once, about 15 MB; timestamp .pyc files, as the library's files never change
# after this.
RUN /usr/local/bin/python -m pip uninstall --yes pip setuptools wheel \
    && /usr/local/bin/python -m compileall -q --invalidation-mode timestamp \
       "$(/usr/local/bin/python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
# pip compiled the venv's packages as it installed them (PYTHONDONTWRITEBYTECODE
# does not stop it; --no-compile would): timestamp .pyc files, valid here as
# COPY --from keeps the files' mtimes.
COPY --from=runtime-venv /opt/venv /opt/venv
# Code stays root-owned, read-only to the app user; it writes only under data/
# (logs, and the SQLite file when DATABASE_URL is unset).
RUN mkdir -p data/log data/streaming \
    && chown app:app data/log data/streaming
COPY get_raw_data.py ./
COPY app/ app/
COPY conf/ conf/
COPY financial/ financial/
COPY lib/ lib/
COPY migrations/ migrations/
COPY scripts/ scripts/
# Sample AlphaVantage responses for get_raw_data.py --sample-if-no-key.
COPY data/fixtures/ data/fixtures/
# The code's bytecode, compiled as root by the Python that runs it, at the paths
# it runs from: at run time nothing may write it (read-only code,
# PYTHONDONTWRITEBYTECODE), so each process would compile its modules (45 ms CPU).
# checked-hash: a .pyc holds its source's hash, not the mtime COPY takes from the
# build context, so it stays valid whatever the mtimes, and the same code gives the
# same .pyc files (not the same layer: the files' own mtimes are the build's).
RUN python -m compileall -q --invalidation-mode checked-hash /app
COPY --from=lint /tmp/lint.passed /tmp/lint.passed
USER 10001:10001
EXPOSE 8000
# The check waits up to 2 x DATABASE_TIMEOUT + 2 s (6 s by default) for /api/health,
# whose 503 on a frozen database takes up to 2 x DATABASE_TIMEOUT: within --timeout.
HEALTHCHECK --interval=10s --timeout=8s --start-period=60s --retries=3 \
    CMD ["python", "/app/scripts/healthcheck.py"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["gunicorn", "--config", "conf/gunicorn.conf.py", "app:create_app()"]
