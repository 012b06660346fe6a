"""GET /api/health answers from one database probe per process per PROBE_SECONDS."""
import shutil
import threading

from sqlalchemy import event

from app.api import health
from app.envelope import DATABASE_UNAVAILABLE
from app.extensions import db
from tests.helpers import build_app, dispose_engines, migrate_database, scrape, sqlite_url

OK = {"status": "ok", "database": "ok", "schema": "current", "info": {"error": ""}}
UNREACHABLE = {"status": "unavailable", "database": "unreachable", "schema": None,
               "info": {"error": DATABASE_UNAVAILABLE}}


def count_statements(application) -> list[str]:
    """Return a list that gathers every statement the app's engine sends from now on."""
    statements: list[str] = []
    with application.app_context():
        event.listen(db.engine, "before_cursor_execute",
                     lambda _conn, _cursor, statement, *_: statements.append(statement))
    return statements


def test_checks_within_the_window_cost_one_query(app, client, health_clock):
    statements = count_statements(app)
    assert client.get("/api/health").get_json() == OK
    probe = list(statements)
    assert any("alembic_version" in statement for statement in probe), probe
    health_clock[0] += health.PROBE_SECONDS - 0.01
    for _ in range(20):
        assert client.get("/api/health").get_json() == OK
    assert statements == probe, "the checks within the window reuse the probe"
    health_clock[0] += 0.01
    assert client.get("/api/health").get_json() == OK
    assert statements == probe + probe, "the window is over: one probe more"


def test_checks_arriving_during_a_probe_wait_for_it(app, health_clock):
    """Checks that arrive together, as several load balancers' do, cost one query, not one each."""
    probes: list[str] = []
    another_probe = threading.Event()

    def slow_probe(_conn, _cursor, statement, *_):
        if "alembic_version" in statement:
            probes.append(statement)
            if len(probes) == 1:
                another_probe.wait(timeout=2)  # time for the other checks to arrive
            else:
                another_probe.set()
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", slow_probe)
    answers: list[dict] = []
    checks = [threading.Thread(target=lambda: answers.append(
        app.test_client().get("/api/health").get_json())) for _ in range(4)]
    for check in checks:
        check.start()
    for check in checks:
        check.join()
    assert answers == [OK] * 4
    assert len(probes) == 1, probes


def test_a_database_failure_shows_once_the_window_is_over(tmp_path, health_clock):
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")
    application = build_app(url, tmp_path / "log")
    client = application.test_client()
    assert client.get("/api/health").get_json() == OK
    dispose_engines(application)
    (tmp_path / "financial.db").unlink()
    (tmp_path / "financial.db").mkdir()  # SQLite cannot open a folder: the database is gone
    assert client.get("/api/health").status_code == 200, "within the window: the last probe"
    health_clock[0] += 1.0  # the README and Swagger say a failure shows within a second
    response = client.get("/api/health")
    assert (response.status_code, response.get_json()) == (503, UNREACHABLE)
    assert response.headers["Retry-After"] == "5"
    shutil.rmtree(tmp_path / "financial.db")
    migrate_database(url, tmp_path / "log")
    assert client.get("/api/health").status_code == 503, "within the window: the failed probe"
    health_clock[0] += health.PROBE_SECONDS
    assert client.get("/api/health").get_json() == OK
    dispose_engines(application)
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count("ERROR app.api.health: health check failed: OperationalError") == 1, log
    assert log.count("app.api.health: health check passes again") == 1, log


def test_a_failing_database_is_counted_once_per_probe_not_per_check(tmp_path, health_clock):
    """financial_database_errors_total counts the failures met, not the checks answered."""
    def errors() -> float:
        return scrape(client)[("financial_database_errors_total", ())]
    (tmp_path / "broken.db").mkdir()  # SQLite cannot open a folder
    client = build_app(f"sqlite:///{tmp_path / 'broken.db'}", tmp_path / "log").test_client()
    first = errors()
    per_scrape = errors() - first  # a scrape reads the database too
    before = errors()
    for _ in range(5):
        assert client.get("/api/health").status_code == 503
    assert errors() - before - per_scrape == 1
