"""lib/connection_budget.py: the connections the settings may open, against the server's limit."""
import pytest

from lib.connection_budget import (
    JOB_CONNECTIONS, ConnectionLimit, ConnectionPlan, budget_warning, connection_limit,
)

SERVER_DEFAULT = ConnectionLimit(151, "max_connections")


@pytest.mark.parametrize("workers, threads, exports, per_worker, total", [
    (17, 4, True, 8, 17 * 8 + JOB_CONNECTIONS),  # 8 usable CPUs, the defaults, MySQL
    (33, 4, True, 8, 33 * 8 + JOB_CONNECTIONS),  # 16 usable CPUs
    (5, 4, False, 4, 5 * 4 + JOB_CONNECTIONS),   # no export pool of its own
    (1, 1, True, 2, 2 + JOB_CONNECTIONS),
])
def test_each_thread_may_hold_a_request_and_an_export_connection(workers, threads, exports,
                                                                 per_worker, total):
    plan = ConnectionPlan(workers, threads, exports)
    assert (plan.per_worker, plan.total) == (per_worker, total)


@pytest.mark.parametrize("max_connections, max_user_connections, expected", [
    (151, 0, SERVER_DEFAULT),
    (151, 20, ConnectionLimit(20, "max_user_connections")),
    (151, 500, SERVER_DEFAULT),
    (151, -1, SERVER_DEFAULT),  # MariaDB's "only accounts with a limit of their own"
])
def test_the_tighter_of_the_server_and_the_user_limit_counts(max_connections,
                                                             max_user_connections, expected):
    assert connection_limit(max_connections, max_user_connections) == expected


def test_a_plan_within_the_limit_warns_nothing():
    plan = ConnectionPlan(workers=18, threads=4, exports=True)
    assert plan.total == 146
    assert budget_warning(plan, SERVER_DEFAULT) is None
    assert budget_warning(plan, ConnectionLimit(plan.total, "max_connections")) is None


def test_a_plan_over_the_limit_says_how_many_and_what_to_change():
    warning = budget_warning(ConnectionPlan(workers=33, threads=4, exports=True),
                             SERVER_DEFAULT)
    assert warning == (
        "connection budget: 33 workers x 8 (4 threads, each with a request and a CSV export "
        "connection) + 2 for the fetch job = 266 database connections may be open at once, "
        "more than the 151 the server allows (max_connections); under load requests will "
        "answer 503 and the fetch job may be refused: lower GUNICORN_WORKERS or "
        "GUNICORN_THREADS, or raise max_connections (each more API replica adds 264)")


def test_the_warning_names_the_user_limit_when_it_is_the_tighter():
    warning = budget_warning(ConnectionPlan(workers=2, threads=3, exports=False),
                             ConnectionLimit(5, "max_user_connections"))
    assert warning is not None
    assert "2 workers x 3 (one per thread) + 2 for the fetch job = 8 " in warning
    assert "more than the 5 the server allows (max_user_connections)" in warning
    assert "or raise max_user_connections" in warning
