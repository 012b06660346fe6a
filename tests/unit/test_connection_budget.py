"""lib/connection_budget.py: the connections the settings may open, against the server's limit."""
import pytest

from lib.connection_budget import (
    JOB_CONNECTIONS, ConnectionLimit, ConnectionPlan, budget_warning, connection_limit,
)

SERVER_DEFAULT = ConnectionLimit(151, "max_connections")


@pytest.mark.parametrize("workers, threads, exports, per_worker, total", [
    (17, 4, 2, 6, 17 * 6 + JOB_CONNECTIONS),  # 8 usable CPUs, the defaults, MySQL
    (33, 4, 2, 6, 33 * 6 + JOB_CONNECTIONS),  # 16 usable CPUs
    (5, 4, 0, 4, 5 * 4 + JOB_CONNECTIONS),    # no export pool of its own
    (3, 4, 8, 8, 3 * 8 + JOB_CONNECTIONS),    # no more exports than threads
    (1, 1, 2, 2, 2 + JOB_CONNECTIONS),
])
def test_each_thread_holds_a_request_connection_and_each_export_one_more(
        workers, threads, exports, per_worker, total):
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
    plan = ConnectionPlan(workers=24, threads=4, exports=2)
    assert plan.total == 146
    assert budget_warning(plan, SERVER_DEFAULT) is None
    assert budget_warning(plan, ConnectionLimit(plan.total, "max_connections")) is None


def test_a_plan_over_the_limit_says_how_many_and_what_to_change():
    warning = budget_warning(ConnectionPlan(workers=33, threads=4, exports=2),
                             SERVER_DEFAULT)
    assert warning == (
        "connection budget: 33 workers x 6 (4 threads with a request connection, 2 of them "
        "with a CSV export one) + 2 for the fetch job = 200 database connections may be open "
        "at once, more than the 151 the server allows (max_connections); under load requests "
        "will answer 503 and the fetch job may be refused: lower GUNICORN_WORKERS, "
        "GUNICORN_THREADS or EXPORT_CONCURRENCY, or raise max_connections (each more API "
        "replica adds 198)")


def test_the_warning_names_the_user_limit_when_it_is_the_tighter():
    warning = budget_warning(ConnectionPlan(workers=2, threads=3, exports=0),
                             ConnectionLimit(5, "max_user_connections"))
    assert warning is not None
    assert "2 workers x 3 (one per thread) + 2 for the fetch job = 8 " in warning
    assert "more than the 5 the server allows (max_user_connections)" in warning
    assert "or raise max_user_connections" in warning
