"""Measure API throughput and latency under gunicorn on this machine; prints a table.

Seeds a database with synthetic prices, starts gunicorn on a free loopback
port, and drives each scenario from client threads with keep-alive
connections for a fixed time. Usage (see README, "Performance")::

    .venv/bin/python scripts/benchmark.py [--database-url URL] [--cache-redis-url URL]
"""
import argparse
import datetime
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from flask_migrate import upgrade  # noqa: E402 (needs the project root on sys.path)
from sqlalchemy import delete  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from financial.models import FinancialData  # noqa: E402
from lib.db import upsert_rows  # noqa: E402

FIRST_DAY = datetime.date(2020, 1, 1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp folder")
    parser.add_argument("--cache-redis-url", help="use RedisCache at this URL (default: "
                                                  "SimpleCache)")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=1000, help="trading days per symbol")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each scenario")
    return parser.parse_args()


def seed(url: str, symbols: int, days: int) -> int:
    """Fill the table with symbols x days rows of synthetic prices; return the row count."""
    overrides = {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"}
    app = create_app("development", overrides=overrides)
    rng = random.Random(7)
    with app.app_context():
        upgrade()
        db.session.execute(delete(FinancialData))
        for number in range(symbols):
            rows = [{"symbol": f"SYM{number:03d}", "date": FIRST_DAY + datetime.timedelta(days=d),
                     "open_price": Decimal(rng.randint(10000, 9999999)).scaleb(-4),
                     "close_price": Decimal(rng.randint(10000, 9999999)).scaleb(-4),
                     "volume": rng.randint(0, 10**9)} for d in range(days)]
            upsert_rows(db.session(), FinancialData, rows, ("symbol", "date"))
        db.session.commit()
        db.engine.dispose()
    return symbols * days


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(args: argparse.Namespace, url: str, port: int, log_dir: str):
    env = {**os.environ, "APP_ENV": "production", "DATABASE_URL": url, "LOG_DIR": log_dir,
           "CACHE_TYPE": "RedisCache" if args.cache_redis_url else "SimpleCache",
           "CACHE_REDIS_URL": args.cache_redis_url or ""}
    command = [sys.executable, "-m", "gunicorn", "--workers", str(args.workers),
               "--threads", str(args.threads), "--bind", f"127.0.0.1:{port}",
               "--log-level", "warning", "app:create_app()"]
    server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if get(http.client.HTTPConnection("127.0.0.1", port, timeout=2), "/api/health") == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer /api/health within 30 s")


def get(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status


def drive(port: int, paths, clients: int, seconds: float) -> tuple[list[float], int]:
    """Send requests from ``clients`` threads for ``seconds``; return latencies and errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(seed_value: int) -> None:
        rng = random.Random(seed_value)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, failed = [], 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                status = get(connection, paths(rng))
            except OSError:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                status = 0
            mine.append(time.perf_counter() - started)
            failed += status != 200
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def scenarios(symbols: int, days: int) -> dict:
    def day(offset: int) -> str:
        return (FIRST_DAY + datetime.timedelta(days=offset)).isoformat()

    def random_range(rng: random.Random) -> str:
        start = rng.randrange(days - 30)
        return (f"symbol=SYM{rng.randrange(symbols):03d}&start_date={day(start)}"
                f"&end_date={day(start + rng.randrange(1, 30))}")

    return {
        "health (database ping)": lambda rng: "/api/health",
        "financial_data, same page (cache hit)":
            lambda rng: f"/api/financial_data?symbol=SYM001&start_date={day(100)}&limit=100",
        "financial_data, random pages (mostly misses)":
            lambda rng: f"/api/financial_data?limit=20&page={rng.randrange(1, 2000)}",
        "financial_data, symbol + 30-day range, misses":
            lambda rng: f"/api/financial_data?{random_range(rng)}&limit=30",
        "statistics, same query (cache hit)":
            lambda rng: f"/api/statistics?symbol=SYM002&start_date={day(0)}&end_date={day(364)}",
        "statistics, random ranges (mostly misses)":
            lambda rng: f"/api/statistics?{random_range(rng)}",
    }


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        rows = seed(url, args.symbols, args.days)
        port = free_port()
        server = start_gunicorn(args, url, port, tmp)
        try:
            backend = url.split(":", 1)[0]
            cache_name = "RedisCache" if args.cache_redis_url else "SimpleCache"
            print(f"{rows} rows on {backend}, {cache_name}, gunicorn {args.workers} workers x "
                  f"{args.threads} threads, {args.clients} clients, {args.seconds:.0f} s each, "
                  f"{os.cpu_count()} CPUs shared by server and clients")
            print(f"{'scenario':48} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
                  f"{'errors':>6}")
            for name, paths in scenarios(args.symbols, args.days).items():
                latencies, errors = drive(port, paths, args.clients, args.seconds)
                latencies.sort()
                p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
                print(f"{name:48} {len(latencies):9d} {len(latencies) / args.seconds:8.0f} "
                      f"{statistics.median(latencies) * 1000:7.1f} {p99:7.1f} {errors:6d}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
