"""Measure the API against the framework's ceiling under gunicorn, and the fetch job's ingest.

Seeds (or reuses) a data set of SYMBOLS x YEARS of weekdays, starts the API and
the ceiling app (``scripts/ceiling_app.py``, a bare Flask-RESTX app returning a
fixed JSON body) under the same gunicorn settings (``conf/gunicorn.conf.py``),
drives each scenario with wrk, alternating which server goes first in each
repetition, and prints req/s, p50, p99 and the ratio to the ceiling measured
in the same repetition. The ceiling app behind the API's rate limit is measured
the same way: the API counts every request as that app does, so its ratio is
what the rate limit alone leaves of the ceiling.
Then times ``get_raw_data.py --full --from-file`` on generated files, into an
empty database and again with nothing changed.
Usage (see README, "Performance")::

    make benchmark [BENCHMARK_ARGS="--database-url URL --cache-redis-url URL \
                                    --ratelimit-storage-url URL"]
"""
import argparse
import contextlib
import datetime
import http.client
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from flask_migrate import upgrade  # noqa: E402 (needs the project root on sys.path)
import redis  # noqa: E402
from sqlalchemy import create_engine, delete, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from financial.models import FinancialData  # noqa: E402
from financial.monthly_sums import refresh_monthly_sums  # noqa: E402

FIRST_DAY = datetime.date(2006, 1, 2)
DEFAULT_SQLITE = PROJECT_ROOT / "data" / "streaming" / "benchmark.db"
GUNICORN_CONFIG = str(PROJECT_ROOT / "conf" / "gunicorn.conf.py")
SEED_CHUNK = 20_000
# The API's cache keys start with it, so only its own answers are forgotten between
# runs, never those of a deployment sharing the Redis.
CACHE_KEY_PREFIX = "benchmark:"
# Far above what 16 connections on 2 cores can send, so the limiter is on but never refuses.
BENCHMARK_RATE_LIMIT = "100000000 per minute"
# The ceiling app behind the API's rate limit: what the limit alone leaves of the ceiling.
LIMITER_BOUND = "bound: the ceiling + the API's rate limit"
# The folders of code the image copies and compiles (Dockerfile; a test compares them);
# the job's script itself is compiled at each start, in a container too.
PROJECT_PACKAGES = ("app", "conf", "financial", "lib", "migrations", "scripts")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help=f"default: SQLite at {DEFAULT_SQLITE}, "
                                               "seeded once and reused")
    parser.add_argument("--cache-redis-url",
                        help="RedisCache at this URL (default SimpleCache); the benchmark "
                             "first deletes the cache's keys there, so no answer of an earlier "
                             "run hits")
    parser.add_argument("--ratelimit-storage-url", default="memory://",
                        help="where the rate limit counts (default memory://; production: a "
                             "Redis of its own, not the cache's)")
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=int, default=20, help="years of weekdays per symbol")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--seconds", type=int, default=8, help="duration of each wrk run")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--workers", type=int, default=5, help="gunicorn workers, both servers")
    parser.add_argument("--ingest-files", type=int, default=100)
    parser.add_argument("--ingest-days", type=int, default=785)
    parser.add_argument("--api-setting", action="append", default=[], metavar="NAME=VALUE",
                        type=api_setting,
                        help="a setting for the API's server only, over the production ones "
                             "(repeatable), e.g. LOG_LEVEL=WARNING (no request log line) or "
                             "RATE_LIMIT= (no limit), to see what each costs")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    return parser.parse_args()


def api_setting(text: str) -> str:
    """Accept NAME=VALUE with an upper-case NAME, as the settings are named (VALUE may be empty)."""
    name, equals, _ = text.partition("=")
    if not equals or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, e.g. LOG_LEVEL=WARNING, "
                                         f"got {text!r}")
    return text


def weekdays(count: int | None = None, years: int | None = None) -> list[datetime.date]:
    """Return ``count`` weekdays, or those of ``years`` years, from FIRST_DAY on."""
    end = FIRST_DAY + datetime.timedelta(days=365 * years) if years else None
    days: list[datetime.date] = []
    day = FIRST_DAY
    while (count is None or len(days) < count) and (end is None or day < end):
        if day.weekday() < 5:
            days.append(day)
        day += datetime.timedelta(days=1)
    return days


def symbol_name(number: int) -> str:
    return f"SYM{number:03d}"


# --- the data set -------------------------------------------------------------------------------

def ensure_database(url: str) -> None:
    """Create the MySQL database of ``url`` if it does not exist (SQLite creates its file)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        return
    server = create_engine(parsed.set(database=""))
    with server.begin() as connection:
        connection.execute(text(f"CREATE DATABASE IF NOT EXISTS {parsed.database}"))
    server.dispose()


def migrated_app(url: str):
    """Return an app on ``url`` whose schema is up to date."""
    ensure_database(url)
    # The job's read timeout: migrating 2.6 million rows takes longer than the API's.
    app = create_app("development", overrides={"SQLALCHEMY_DATABASE_URI": url,
                                               "LOG_LEVEL": "WARNING",
                                               "DATABASE_READ_TIMEOUT": 600})
    with app.app_context():
        upgrade()
    return app


def seed_prices(url: str, symbols: int, years: int) -> int:
    """Fill financial_data with symbols x weekdays rows unless it already holds exactly them."""
    days = weekdays(years=years)
    expected = symbols * len(days)
    app = migrated_app(url)
    with app.app_context():
        session = db.session()
        if session.scalar(select(func.count()).select_from(FinancialData)) == expected:
            db.engine.dispose()
            return expected
        session.execute(delete(FinancialData))
        started = time.perf_counter()
        for chunk in _seed_rows(symbols, days):
            session.execute(insert(FinancialData), chunk)
        refresh_monthly_sums(session)
        session.commit()
        print(f"seeded {expected:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        db.engine.dispose()
    return expected


def _seed_rows(symbols: int, days: list[datetime.date]) -> Iterator[list[dict]]:
    rng = random.Random(7)
    chunk: list[dict] = []
    for number in range(symbols):
        for day in days:
            low = rng.randint(10_000, 9_000_000)
            chunk.append({"symbol": symbol_name(number), "date": day,
                          "open_price": Decimal(low + rng.randint(0, 5000)).scaleb(-4),
                          "close_price": Decimal(low + rng.randint(0, 5000)).scaleb(-4),
                          "volume": rng.randint(0, 10**9)})
            if len(chunk) == SEED_CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


# --- servers -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment(args: argparse.Namespace, url: str, work_dir: str) -> dict[str, str]:
    """The production settings the API runs with, request log and limiter included."""
    return {**os.environ, "APP_ENV": "production", "DATABASE_URL": url, "LOG_DIR": work_dir,
            "LOG_LEVEL": "INFO", "GUNICORN_WORKERS": str(args.workers),
            "CACHE_TYPE": "RedisCache" if args.cache_redis_url else "SimpleCache",
            "CACHE_REDIS_URL": args.cache_redis_url or "", "CACHE_KEY_PREFIX": CACHE_KEY_PREFIX,
            "RATE_LIMIT": BENCHMARK_RATE_LIMIT,
            "RATELIMIT_STORAGE_URI": args.ratelimit_storage_url}


def start_server(app_spec: str, env: dict[str, str], ready_path: str) -> tuple:
    """Start gunicorn with the project's config on a free port; return (process, port)."""
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    # Its output (a log line per request) would cost the measurement: a server
    # that does not start is named with the command that shows why.
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG, app_spec],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    see_why = (f"; to see why, run: .venv/bin/python -m gunicorn --config {GUNICORN_CONFIG} "
               f"'{app_spec}'")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{app_spec} exited with status {process.returncode}{see_why}")
        try:
            if get_status(port, ready_path) == 200:
                return process, port
        except (OSError, http.client.HTTPException):
            pass  # not listening yet
        time.sleep(0.2)
    stop(process)
    raise SystemExit(f"{app_spec} did not answer {ready_path} within 60 s{see_why}")


def get_status(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


# --- wrk -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(port: int, path: str, args: argparse.Namespace, script: Path | None = None,
            seconds: int | None = None) -> WrkResult:
    """Drive ``path`` with wrk (2 threads, keep-alive connections); parse its report."""
    command = ["wrk", "-t2", f"-c{args.connections}", f"-d{seconds or args.seconds}s",
               "--latency", f"http://127.0.0.1:{port}{path}"]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


_DURATION = re.compile(r"([0-9.]+)(us|ms|s)\b")


def parse_wrk(output: str) -> WrkResult:
    """Read requests/s, the 50% and 99% latencies and the error counts from wrk's report."""
    rate_match = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    if rate_match is None:
        raise SystemExit(f"wrk printed no rate:\n{output}")
    rate = float(rate_match.group(1))
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(value) for value in socket_errors.groups())
    return WrkResult(rate, _milliseconds(percentiles["50"]), _milliseconds(percentiles["99"]),
                     errors)


def _milliseconds(text: str) -> float:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise SystemExit(f"wrk printed an unknown duration {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def random_statistics_script(work_dir: Path, symbols: int, days: list[datetime.date]) -> Path:
    """Write a wrk script asking 20-year statistics with a random symbol and last day."""
    ends = ",".join(f'"{day.isoformat()}"' for day in days[-260:])
    script = work_dir / "random_statistics.lua"
    script.write_text(f"""
local ends = {{{ends}}}
math.randomseed(os.time())
request = function()
  local path = string.format("/api/statistics?symbol=SYM%03d&start_date={days[0]}&end_date=%s",
                             math.random(0, {symbols - 1}), ends[math.random(1, #ends)])
  return wrk.format("GET", path)
end
""")
    return script


# --- the HTTP scenarios ---------------------------------------------------------------------------

def scenarios(args: argparse.Namespace, work_dir: Path) -> dict[str, tuple[str, Path | None]]:
    """Name -> (path, wrk script or None) of each API scenario."""
    days = weekdays(years=args.years)
    first, last = days[0].isoformat(), days[-1].isoformat()
    year_ago = days[-260].isoformat()
    return {
        "statistics, cache hit":
            (f"/api/statistics?symbol=SYM001&start_date={first}&end_date={last}", None),
        "financial_data, one symbol, cache hit":
            (f"/api/financial_data?symbol=SYM002&start_date={year_ago}&limit=100", None),
        "statistics, 20 years, uncached":
            ("/", random_statistics_script(work_dir, args.symbols, days)),
    }


def forget_cached_answers(redis_url: str) -> None:
    """Delete the API's cache keys: answers an earlier run stored would pass for uncached.

    Only the cache's prefix, so rate-limit counts kept in the same database stay.
    """
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{CACHE_KEY_PREFIX}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])


def measure_http(args: argparse.Namespace, url: str, work_dir: Path) -> None:
    if args.cache_redis_url:
        forget_cached_answers(args.cache_redis_url)
    env = server_environment(args, url, str(work_dir))
    api_env = {**env, **dict(setting.partition("=")[::2] for setting in args.api_setting)}
    results: dict[str, list[tuple[WrkResult, float]]] = {}
    # Every server started is stopped, also when a later one fails to start.
    with contextlib.ExitStack() as servers:
        def started(app_spec: str, server_env: dict[str, str], ready_path: str) -> int:
            process, port = start_server(app_spec, server_env, ready_path)
            servers.callback(stop, process)
            return port

        api_port = started("app:create_app()", api_env, "/api/health")
        ceiling_port = started("scripts.ceiling_app:create_app()", env, "/api/ceiling")
        # The API's settings: with RATE_LIMIT= the bound has no limit either.
        bound_port = started("scripts.ceiling_app:create_rate_limited_app()", api_env,
                             "/api/ceiling")
        targets = {name: (api_port, path, script)
                   for name, (path, script) in scenarios(args, work_dir).items()}
        targets[LIMITER_BOUND] = (bound_port, "/api/ceiling", None)
        for name, (port, path, script) in targets.items():
            run_wrk(port, path, args, script, seconds=2)  # warm the workers and the cache
            for repetition in range(args.repetitions):
                results.setdefault(name, []).append(
                    _one_repetition(args, repetition, (port, path, script), ceiling_port))
        p50 = single_request_p50(api_port, args)
    print_http_table(args, url, results, p50)


def _one_repetition(args, repetition: int, target: tuple, ceiling_port: int):
    """Measure the scenario and the ceiling, the ceiling first in every other repetition."""
    port, path, script = target
    if repetition % 2:
        ceiling = run_wrk(ceiling_port, "/api/ceiling", args)
        result = run_wrk(port, path, args, script)
    else:
        result = run_wrk(port, path, args, script)
        ceiling = run_wrk(ceiling_port, "/api/ceiling", args)
    return result, result.requests_per_second / ceiling.requests_per_second


def single_request_p50(port: int, args: argparse.Namespace, count: int = 300) -> float:
    """p50 (ms) of uncached 20-year statistics, one request at a time on one connection."""
    days = weekdays(years=args.years)
    rng = random.Random(11)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    for _ in range(count):
        path = (f"/api/statistics?symbol={symbol_name(rng.randrange(args.symbols))}"
                f"&start_date={days[1].isoformat()}&end_date={rng.choice(days[-200:])}")
        started = time.perf_counter()
        connection.request("GET", path)
        connection.getresponse().read()
        latencies.append((time.perf_counter() - started) * 1000)
    connection.close()
    return statistics.median(latencies)


def print_http_table(args, url: str, results: dict, single_p50: float) -> None:
    backend = make_url(url).get_backend_name()
    cache = "RedisCache" if args.cache_redis_url else "SimpleCache"
    limiter = make_url(args.ratelimit_storage_url).drivername
    changed = f", the API with {', '.join(args.api_setting)}" if args.api_setting else ""
    print(f"\nHTTP: {backend}, {cache}, rate limit counted in {limiter}{changed}, gunicorn "
          f"{args.workers} workers x {os.environ.get('GUNICORN_THREADS', '4')} threads "
          f"(conf/gunicorn.conf.py), "
          f"wrk {args.connections} connections x {args.seconds} s, {args.repetitions} "
          f"repetitions, {os.cpu_count()} CPUs shared by wrk and the servers")
    print(f"{'scenario':44} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'ratio':>6}  (median; ratios per repetition)")
    for name, runs in results.items():
        rates = [run.requests_per_second for run, _ in runs]
        ratios = [ratio for _, ratio in runs]
        print(f"{name:44} {statistics.median(rates):8.0f} "
              f"{statistics.median(run.p50_ms for run, _ in runs):7.2f} "
              f"{statistics.median(run.p99_ms for run, _ in runs):7.2f} "
              f"{sum(run.errors for run, _ in runs):6d} {statistics.median(ratios):6.2f}  "
              f"({', '.join(f'{ratio:.2f}' for ratio in ratios)})")
    print(f"single request, statistics 20 years uncached: p50 {single_p50:.2f} ms")


# --- ingest --------------------------------------------------------------------------------------

def write_ingest_files(folder: Path, files: int, days: int) -> list[Path]:
    """Write ``files`` saved TIME_SERIES_DAILY_ADJUSTED answers of ``days`` days each."""
    rng = random.Random(3)
    dates = weekdays(count=days)
    paths = []
    for number in range(files):
        series = {}
        for day in reversed(dates):
            low = rng.randint(10_000, 9_000_000)
            prices = sorted(low + rng.randint(0, 5000) for _ in range(4))
            low_price, open_price, close_price, high_price = (
                f"{Decimal(value).scaleb(-4):f}" for value in prices)
            series[day.isoformat()] = {
                "1. open": open_price, "2. high": high_price, "3. low": low_price,
                "4. close": close_price, "5. adjusted close": close_price,
                "6. volume": str(rng.randint(0, 10**9)), "7. dividend amount": "0.0000",
                "8. split coefficient": "1.0"}
        payload = {"Meta Data": {"1. Information": "Daily Time Series with Splits and "
                                                   "Dividend Events",
                                 "2. Symbol": f"ING{number:03d}"},
                   "Time Series (Daily)": series}
        path = folder / f"ING{number:03d}.json"
        path.write_text(json.dumps(payload))
        paths.append(path)
    return paths


def ingest_database(url: str, work_dir: Path) -> str:
    """Return a migrated database with empty tables for the ingest runs, next to the benchmark's.

    The schema is created beforehand: the runs time storing rows, not
    creating tables (a run into an existing schema loads no migration tool).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = work_dir / "ingest.db"
        for leftover in work_dir.glob("ingest.db*"):
            leftover.unlink()
        target = f"sqlite:///{path}"
    else:
        name = f"{parsed.database}_ingest"
        server = create_engine(parsed.set(database=""))
        with server.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            connection.execute(text(f"CREATE DATABASE {name}"))
        server.dispose()
        target = parsed.set(database=name).render_as_string(hide_password=False)
    with migrated_app(target).app_context():
        db.engine.dispose()
    return target


def compile_project() -> None:
    """Compile the project's modules as the image does, so the runs time the job, not compiling.

    Under ``PYTHONDONTWRITEBYTECODE`` (as the image sets it) nothing writes
    the bytecode at run time: without it each run would compile the modules
    it imports (about 45 ms of CPU), which no container does.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode",
                    "checked-hash", *PROJECT_PACKAGES], cwd=PROJECT_ROOT, check=True)


def measure_ingest(args: argparse.Namespace, url: str, work_dir: Path) -> None:
    """Time the job into empty tables, then again with nothing changed, once per repetition."""
    files = write_ingest_files(work_dir, args.ingest_files, args.ingest_days)
    rows = args.ingest_files * args.ingest_days
    compile_project()
    command = [sys.executable, "get_raw_data.py", "--full"]
    for path in files:
        command += ["--from-file", str(path)]
    seconds: dict[str, list[float]] = {"into empty tables": [], "again, nothing changed": []}
    for _ in range(args.repetitions):
        target = ingest_database(url, work_dir)
        # As the image runs it: the compiled modules are read, nothing is written.
        env = {**server_environment(args, target, str(work_dir)), "LOG_LEVEL": "WARNING",
               "PYTHONDONTWRITEBYTECODE": "1"}
        for label, runs in seconds.items():
            started = time.perf_counter()
            subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs.append(time.perf_counter() - started)
    print(f"\nIngest: get_raw_data.py --full --from-file x {args.ingest_files} files x "
          f"{args.ingest_days} days = {rows:,} rows, on {make_url(url).get_backend_name()}, "
          f"one process, start-up included, {args.repetitions} repetitions")
    for label, runs in seconds.items():
        median = statistics.median(runs)
        print(f"{label:24} {median:6.2f} s  {rows / median:9,.0f} rows/s  (median; "
              f"{', '.join(f'{rows / run:,.0f}' for run in runs)})")


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install wrk` (make benchmark does it)")
    url = args.database_url or f"sqlite:///{DEFAULT_SQLITE}"
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        if not args.skip_http:
            rows = seed_prices(url, args.symbols, args.years)
            print(f"data set: {rows:,} rows ({args.symbols} symbols x {args.years} years)")
            measure_http(args, url, work_dir)
        if not args.skip_ingest:
            measure_ingest(args, url, work_dir)


if __name__ == "__main__":
    main()
