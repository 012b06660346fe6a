"""conf/prometheus-alerts.yml in promtool: its alerts fire, and stay quiet, on real scrapes.

Each test stores a state (days, a fetch run, a broken database), scrapes the
app's /metrics a minute apart in promtool's time, and has ``promtool test
rules`` evaluate the rules on those very series: a metric or label renamed in
app/metrics.py fails them. promtool's time 0 is 1970-01-01 00:00 UTC, a
Thursday, so the stored days and runs are in that week.
"""
import datetime
import json
import re
import shutil
import subprocess
from decimal import Decimal

import pytest
from ruamel.yaml import YAML

from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.models import FetchRun
from tests.helpers import build_app, insert_prices, migrate_database, scrape, sqlite_url

RULES = PROJECT_ROOT / "conf" / "prometheus-alerts.yml"
ALERTS = {rule["alert"]: rule for group in YAML(typ="safe").load(RULES)["groups"]
          for rule in group["rules"] if "alert" in rule}
# The target as Prometheus labels it, with the README's scrape job.
TARGET = {"job": "financial-api", "instance": "api:8000"}
JOB = {"job": "financial-api"}
THURSDAY, FRIDAY = datetime.date(1970, 1, 1), datetime.date(1970, 1, 2)


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed: apt-get install prometheus (.ci/run installs it)")
    return found


def selector(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ", ".join(f"{key}={json.dumps(value)}" for key, value in
                                  sorted(labels.items())) + "}"


def input_series(scrapes: list[dict], minutes: int) -> list[dict]:
    """promtool series of ``scrapes`` a minute apart, the last one held until ``minutes``.

    ``up`` is 1: each scrape answered 200. ``_`` is a series a scrape lacked.
    """
    held = minutes - len(scrapes) + 1
    series = [{"series": selector("up", TARGET), "values": f"1+0x{minutes}"}]
    for name, labels in sorted({key for samples in scrapes for key in samples}):
        values = [repr(samples[name, labels]) if (name, labels) in samples else "_"
                  for samples in scrapes]
        values[-1] += f"+0x{held}" if values[-1] != "_" else f"x{held}"
        series.append({"series": selector(name, {**dict(labels), **TARGET}),
                       "values": " ".join(values)})
    return series


def render(template: str, labels: dict[str, str]) -> str:
    """Expand an annotation as Prometheus does; the rules use ``{{ $labels.NAME }}`` only."""
    def label(match: re.Match) -> str:
        assert match[1] in labels, f"{template!r} names a label the alert lacks: {labels}"
        return labels[match[1]]
    expanded = re.sub(r"\{\{ \$labels\.(\w+) \}\}", label, template)
    assert "{{" not in expanded, f"render() expands $labels only: {template!r}"
    return expanded


def alert(name: str, **labels: str) -> tuple[str, dict]:
    """The alert ``name`` firing with ``labels`` (and the rule's own), annotations expanded."""
    rule = ALERTS[name]
    every_label = {**rule.get("labels", {}), **labels}
    return name, {"exp_labels": every_label,
                  "exp_annotations": {key: render(text, every_label)
                                      for key, text in rule["annotations"].items()}}


def at(eval_time: str, *firing: tuple[str, dict]) -> list[dict]:
    """Checks at ``eval_time``: exactly ``firing`` fire, every other alert is quiet."""
    return [{"eval_time": eval_time, "alertname": name,
             "exp_alerts": [expected for fired, expected in firing if fired == name]}
            for name in ALERTS]


def assert_alerts(promtool: str, tmp_path, series: list[dict], *checks: list[dict]) -> None:
    tests = tmp_path / "alerts_test.yml"
    YAML(typ="safe").dump({
        "rule_files": [str(RULES)], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series,
                   "alert_rule_test": [check for group in checks for check in group]}],
    }, tests)
    result = subprocess.run([promtool, "test", "rules", str(tests)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def store_state(app, make_price, days: dict[str, datetime.date],
                run: tuple[str, datetime.datetime, datetime.datetime | None] | None) -> None:
    """Store each symbol's newest day in ``days``, and a fetch run (status, start, end)."""
    with app.app_context():
        insert_prices(db.session, [make_price(symbol=symbol, date=day, open_price=Decimal("1"),
                                              close_price=Decimal("1"))
                                   for symbol, day in days.items()])
        if run:
            status, started, finished = run
            db.session.add(FetchRun(started_at=started, finished_at=finished,
                                    trigger="schedule", status=status))
        db.session.commit()


def evening(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour, minute))


def test_the_rules_file_is_valid(promtool):
    result = subprocess.run([promtool, "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_series_the_alerts_read_is_one_the_api_serves(sqlite_app, make_price):
    store_state(sqlite_app, make_price, {"IBM": FRIDAY},
                ("ok", evening(FRIDAY, 22, 30), evening(FRIDAY, 22, 31)))
    client = sqlite_app.test_client()
    client.get("/api/health")
    served = {name for name, _labels in scrape(client)}
    read = {name for rule in ALERTS.values()
            for name in re.findall(r"\bfinancial_\w+", rule["expr"])}
    assert read and read <= served, f"not served: {read - served}"


def test_the_weekend_after_fridays_run_is_quiet_then_runs_and_days_are_overdue(
        promtool, tmp_path, sqlite_app, make_price):
    store_state(sqlite_app, make_price, {"IBM": FRIDAY, "AAPL": FRIDAY},
                ("ok", evening(FRIDAY, 22, 30), evening(FRIDAY, 22, 31)))
    samples = scrape(sqlite_app.test_client())
    assert_alerts(promtool, tmp_path, input_series([samples], minutes=7 * 24 * 60),
                  at("4d23h"),  # Monday 23:00 UTC: the run 72.5 hours old, Friday 3.96 days
                  at("5d11h", alert("FinancialFetchRunsOverdue", **JOB)),  # 84.5 hours
                  at("6d13h",  # Friday 5.54 days old
                     alert("FinancialFetchRunsOverdue", **JOB),
                     alert("FinancialStoredDataStale", symbol="AAPL", **JOB),
                     alert("FinancialStoredDataStale", symbol="IBM", **JOB)))


@pytest.mark.parametrize("status, finished", [("ok", evening(THURSDAY, 22, 31)),
                                              ("running", None)],
                         ids=["ended", "died while running"])
def test_a_weekdays_run_missed_is_overdue_after_36_hours(
        promtool, tmp_path, sqlite_app, make_price, status, finished):
    store_state(sqlite_app, make_price, {"IBM": THURSDAY},
                (status, evening(THURSDAY, 22, 30), finished))
    samples = scrape(sqlite_app.test_client())
    assert_alerts(promtool, tmp_path, input_series([samples], minutes=3 * 24 * 60),
                  at("1d22h"),  # Friday 22:00 UTC, before Friday's run would end
                  at("2d11h", alert("FinancialFetchRunsOverdue", **JOB)))  # 36.5 hours


@pytest.mark.parametrize("status", ["failed", "partial", "interrupted"])
def test_a_last_run_that_did_not_end_ok_is_told(
        promtool, tmp_path, sqlite_app, make_price, status):
    store_state(sqlite_app, make_price, {"IBM": THURSDAY},
                (status, evening(THURSDAY, 22, 30), evening(THURSDAY, 22, 31)))
    samples = scrape(sqlite_app.test_client())
    assert_alerts(promtool, tmp_path, input_series([samples], minutes=24 * 60),
                  at("23h", alert("FinancialFetchRunFailed", status=status, **JOB)))


def test_a_failed_run_stays_told_while_the_next_one_runs_until_one_ends_ok(
        promtool, tmp_path, sqlite_app, make_price):
    wednesday = THURSDAY - datetime.timedelta(days=1)
    store_state(sqlite_app, make_price, {"IBM": wednesday},
                ("failed", evening(wednesday, 22, 30), evening(wednesday, 22, 31)))
    client = sqlite_app.test_client()
    failed = scrape(client)
    with sqlite_app.app_context():
        run = FetchRun(started_at=evening(THURSDAY, 0, 1), trigger="schedule", status="running")
        db.session.add(run)
        db.session.commit()
        running = scrape(client)
        run.status, run.finished_at = "partial", evening(THURSDAY, 0, 20)
        db.session.commit()
        partial = scrape(client)
        run.status, run.finished_at = "ok", evening(THURSDAY, 0, 30)
        db.session.commit()
        ended_ok = scrape(client)
    scrapes = [failed, *[running] * 18, partial, *[ended_ok] * 10]
    assert_alerts(promtool, tmp_path, input_series(scrapes, minutes=40),
                  at("0m", alert("FinancialFetchRunFailed", status="failed", **JOB)),
                  at("10m", alert("FinancialFetchRunFailed", status="failed", **JOB)),
                  at("19m", alert("FinancialFetchRunFailed", status="partial", **JOB)),
                  at("25m"))


def test_a_database_without_any_run_is_told_after_36_hours(promtool, tmp_path, sqlite_app):
    samples = scrape(sqlite_app.test_client())  # nothing stored, no run recorded
    assert_alerts(promtool, tmp_path, input_series([samples], minutes=2 * 24 * 60),
                  at("35h"), at("37h", alert("FinancialNoFetchRunRecorded", **JOB)))


def traffic(client, paths: list[str], minutes: int) -> list[dict]:
    """Request ``paths`` then scrape, once a minute for ``minutes``."""
    scrapes = []
    for _ in range(minutes):
        for path in paths:
            client.get(path)
        scrapes.append(scrape(client))
    return scrapes


def test_a_database_down_is_told_and_so_are_its_503s(promtool, tmp_path):
    (tmp_path / "broken.db").mkdir()  # SQLite cannot open a folder
    client = build_app(f"sqlite:///{tmp_path / 'broken.db'}", tmp_path / "log").test_client()
    assert client.get("/api/health").status_code == 503
    scrapes = traffic(client, ["/api/health", "/api/financial_data?symbol=IBM"], minutes=20)
    assert_alerts(promtool, tmp_path, input_series(scrapes, minutes=20),
                  at("3m"),  # not yet for 5 minutes
                  at("16m", alert("FinancialDatabaseDown", **TARGET),
                     alert("FinancialHighErrorRate", **JOB)))


def test_without_the_refused_exports_series_a_database_down_still_raises_the_error_rate(
        promtool, tmp_path):
    """An API of a release before that series (during an upgrade) subtracts nothing."""
    (tmp_path / "broken.db").mkdir()
    client = build_app(f"sqlite:///{tmp_path / 'broken.db'}", tmp_path / "log").test_client()
    scrapes = [{key: value for key, value in samples.items()
                if key[0] != "financial_exports_refused_total"}
               for samples in traffic(client, ["/api/financial_data?symbol=IBM"], minutes=20)]
    assert_alerts(promtool, tmp_path, input_series(scrapes, minutes=20),
                  at("16m", alert("FinancialDatabaseDown", **TARGET),
                     alert("FinancialHighErrorRate", **JOB)))


def test_exports_refused_for_want_of_a_slot_are_no_error_rate(promtool, tmp_path, make_price):
    """EXPORT_CONCURRENCY sheds load on purpose: 503s the client retries, not a fault."""
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")  # create_all would want every bind ever configured
    app = build_app(url, tmp_path / "log", EXPORT_CONCURRENCY=1)
    wednesday = THURSDAY - datetime.timedelta(days=1)
    store_state(app, make_price, {"IBM": wednesday},
                ("ok", evening(wednesday, 22, 30), evening(wednesday, 22, 31)))
    client = app.test_client()
    streaming = client.get("/api/financial_data/export")  # takes the one slot, left unread
    try:
        scrapes = traffic(client, ["/api/financial_data/export", "/api/financial_data?symbol=IBM"],
                          minutes=20)
    finally:
        streaming.close()
    refused = ("financial_exports_refused_total", ())
    assert scrapes[-1][refused] - scrapes[0][refused] == 19, "one a minute: half the answers"
    assert_alerts(promtool, tmp_path, input_series(scrapes, minutes=20), at("16m"))


def test_ordinary_traffic_with_client_errors_is_quiet(promtool, tmp_path, sqlite_app,
                                                      make_price):
    wednesday = THURSDAY - datetime.timedelta(days=1)
    store_state(sqlite_app, make_price, {"IBM": wednesday},
                ("ok", evening(wednesday, 22, 30), evening(wednesday, 22, 31)))
    scrapes = traffic(sqlite_app.test_client(),
                      ["/api/financial_data?symbol=IBM", "/api/financial_data?limit=0",
                       "/api/nothing"], minutes=20)
    assert_alerts(promtool, tmp_path, input_series(scrapes, minutes=20), at("16m"))


def test_an_api_target_down_or_gone_is_told(promtool, tmp_path):
    down = [{"series": selector("up", TARGET), "values": "1 1 0x10"}]
    assert_alerts(promtool, tmp_path, down,
                  at("5m"), at("8m", alert("FinancialApiDown", **TARGET)))
    gone: list[dict] = []
    assert_alerts(promtool, tmp_path, gone, at("4m"), at("6m", alert("FinancialApiDown", **JOB)))
