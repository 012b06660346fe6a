"""An outage is logged once per interval and cause, with the count of what it refused."""
import logging

from lib.outage_log import OutageLog
from tests.helpers import ManualClock

LOG = logging.getLogger("tests.outage")


def database_outage_log(clock) -> OutageLog:
    return OutageLog(30, clock, headline="database unavailable",
                     refusals="requests answered 503", log=LOG)


def outage_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOG.name]


def test_the_first_failure_is_logged_and_the_rest_of_the_interval_counted(caplog):
    clock = ManualClock()
    outage = database_outage_log(clock)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        for _ in range(5):
            outage.failed("OperationalError 2003: cannot connect")
            clock.now += 1
        assert outage_lines(caplog) == [
            "database unavailable: OperationalError 2003: cannot connect"]
        clock.now += 30
        outage.failed("OperationalError 2013: lost connection")
    assert outage_lines(caplog)[1:] == [
        "database unavailable: OperationalError 2013: lost connection "
        "(5 requests answered 503 since the last such line)"]


def test_a_new_outage_after_a_quiet_interval_is_logged_at_once(caplog):
    clock = ManualClock()
    outage = database_outage_log(clock)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        outage.failed("first")
        clock.now += 3600
        outage.failed("second")
    assert outage_lines(caplog) == ["database unavailable: first", "database unavailable: second"]


def test_the_headline_and_what_was_counted_can_be_named(caplog):
    clock = ManualClock()
    outage = OutageLog(30, clock, headline="health check failed", refusals="checks answered 503",
                       log=LOG)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        outage.failed("no schema")
        outage.failed("no schema")
        clock.now += 30
        outage.failed("no schema")
    assert outage_lines(caplog) == [
        "health check failed: no schema",
        "health check failed: no schema (2 checks answered 503 since the last such line)"]


def test_a_new_cause_is_logged_at_once_with_the_count_and_starts_a_new_interval(caplog):
    clock = ManualClock()
    outage = database_outage_log(clock)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        for _ in range(3):
            outage.failed("OperationalError 2013: lost connection")
            clock.now += 5
        outage.failed("OperationalError 2003: cannot connect")
        assert outage_lines(caplog) == [
            "database unavailable: OperationalError 2013: lost connection",
            "database unavailable: OperationalError 2003: cannot connect "
            "(3 requests answered 503 since the last such line)"]
        clock.now += 29
        outage.failed("OperationalError 2003: cannot connect")
        assert len(outage_lines(caplog)) == 2
        clock.now += 1
        outage.failed("OperationalError 2003: cannot connect")
    assert outage_lines(caplog)[2:] == [
        "database unavailable: OperationalError 2003: cannot connect "
        "(2 requests answered 503 since the last such line)"]


def test_causes_that_alternate_get_a_line_each_per_interval(caplog):
    clock = ManualClock()
    outage = database_outage_log(clock)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        for _ in range(10):
            outage.failed("OperationalError 2013: lost connection")
            outage.failed("TimeoutError: no pooled connection became free in time")
            clock.now += 1
    assert outage_lines(caplog) == [
        "database unavailable: OperationalError 2013: lost connection",
        "database unavailable: TimeoutError: no pooled connection became free in time"]
