"""An outage is logged once per interval and cause, with what it refused, and so is its end."""
import logging

from lib.outage_log import OutageLog
from tests.helpers import ManualClock

LOG = logging.getLogger("tests.outage")


def database_outage_log(clock) -> OutageLog:
    return OutageLog(30, clock, headline="database unavailable",
                     refusals="requests answered 503", log=LOG, back="database is back")


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


def test_a_cause_of_an_interval_before_is_logged_at_once_when_it_comes_back(caplog):
    """Only the causes logged in the current interval are counted instead of logged."""
    clock = ManualClock()
    outage = database_outage_log(clock)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        outage.failed("OperationalError 2013: lost connection")
        clock.now += 40
        outage.failed("OperationalError 2003: cannot connect")
        clock.now += 5
        outage.failed("OperationalError 2013: lost connection")
    assert outage_lines(caplog) == [
        "database unavailable: OperationalError 2013: lost connection",
        "database unavailable: OperationalError 2003: cannot connect",
        "database unavailable: OperationalError 2013: lost connection"]


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


def test_the_first_success_after_a_logged_outage_says_the_database_is_back(caplog):
    clock = ManualClock()
    outage = database_outage_log(clock)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        outage.failed("OperationalError 2003: cannot connect")
        for _ in range(4):
            clock.now += 10
            outage.failed("OperationalError 2003: cannot connect")
        clock.now += 2
        outage.succeeded()
        outage.succeeded()
    assert outage_lines(caplog) == [
        "database unavailable: OperationalError 2003: cannot connect",
        "database unavailable: OperationalError 2003: cannot connect "
        "(3 requests answered 503 since the last such line)",
        "database is back after 42s; requests answered 503 since the last "
        "'database unavailable' line: 1"]
    assert caplog.records[-1].levelno == logging.WARNING


def test_the_refusals_the_back_line_counted_are_not_counted_again(caplog):
    clock = ManualClock()
    outage = database_outage_log(clock)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        outage.failed("OperationalError 2003: cannot connect")
        clock.now += 1
        outage.failed("OperationalError 2003: cannot connect")
        outage.succeeded()
        clock.now += 60
        outage.failed("OperationalError 2003: cannot connect")
    assert outage_lines(caplog)[1:] == [
        "database is back after 1s; requests answered 503 since the last "
        "'database unavailable' line: 1",
        "database unavailable: OperationalError 2003: cannot connect"]


def test_a_success_reads_no_clock_while_nothing_failed(caplog):
    reads = []
    outage = database_outage_log(lambda: reads.append(1) or 0.0)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        for _ in range(100):
            outage.succeeded()
    assert (reads, outage_lines(caplog), outage.is_failing) == ([], [], False)


def test_a_failure_soon_after_the_back_line_waits_for_the_interval(caplog):
    """A database that fails every other request gets two lines per interval, not per request."""
    clock = ManualClock()
    outage = database_outage_log(clock)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        for _ in range(30):
            outage.failed("OperationalError 2013: lost connection")
            outage.succeeded()
            clock.now += 1
        outage.failed("OperationalError 2013: lost connection")
        clock.now += 10
        outage.succeeded()
    assert outage_lines(caplog) == [
        "database unavailable: OperationalError 2013: lost connection",
        "database is back after 0s; requests answered 503 since the last "
        "'database unavailable' line: 0",
        "database unavailable: OperationalError 2013: lost connection "
        "(30 requests answered 503 since the last such line)",
        "database is back after 10s; requests answered 503 since the last "
        "'database unavailable' line: 0"]


def test_without_words_for_it_a_success_logs_nothing(caplog):
    clock = ManualClock()
    outage = OutageLog(30, clock, headline="metrics: cannot count", refusals="counts lost",
                       log=LOG)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        outage.failed("OSError: gone")
        outage.succeeded()
    assert outage_lines(caplog) == ["metrics: cannot count: OSError: gone"]
