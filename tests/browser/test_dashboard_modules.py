"""The dashboard's date and address logic, run as the browser runs it (its ES modules).

Each test loads the page once and calls a module's function on a table of
cases, comparing the whole table so a failure shows every wrong case.
"""
import pytest

from lib.tickers import SYMBOL_PATTERN, SYMBOL_RULE

# {"anchored": source} stands for a RegExp matching a whole string, as dashboard.js builds it.
CALL_EACH = """
const [module, name, cases, done] = arguments;
const revive = (arg) => (arg?.anchored === undefined ? arg : new RegExp(`^(?:${arg.anchored})$`));
import(module).then((exports) => done(cases.map((args) => {
  try {
    return exports[name](...args.map(revive));
  } catch (error) {
    return `${error.constructor.name}: ${error.message}`;
  }
})), (error) => done(String(error)));
"""


# The viewer's time zone never moves a day: at Kiritimati (UTC+14) local midnight is the
# day before in UTC; at Los Angeles (UTC-8 or -7) UTC midnight is the day before there.
@pytest.fixture(params=["UTC", "Pacific/Kiritimati", "America/Los_Angeles"])
def call_each(browser, live_server, request):
    """Return ``f(module, name, cases)``: the function's result for each list of arguments.

    The browser runs in each time zone of the parameters in turn.
    """
    browser.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": request.param})
    browser.open(live_server.url + "/")

    def _call_each(module: str, name: str, cases: list[list]) -> list:
        return browser.async_script(CALL_EACH, f"/static/dashboard/{module}", name, cases)

    yield _call_each
    browser.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})


def test_only_real_calendar_days_are_dates(call_each):
    cases = {"2023-03-24": True, "2024-02-29": True, "0099-01-01": True, "0000-01-01": False,
             "2023-02-29": False, "2023-13-01": False, "2023-1-05": False, "20230324": False,
             "": False, "2023-03-24 ": False}
    answers = call_each("ranges.js", "isIsoDate", [[text] for text in cases])
    assert dict(zip(cases, answers)) == cases


def test_months_move_to_the_same_day_or_the_month_end(call_each):
    cases = {("2023-03-24", -1): "2023-02-24", ("2023-03-31", -1): "2023-02-28",
             ("2024-03-31", -1): "2024-02-29", ("2024-02-29", -12): "2023-02-28",
             ("2023-01-15", -3): "2022-10-15", ("2023-05-31", -3): "2023-02-28",
             ("2022-12-31", 2): "2023-02-28"}
    answers = call_each("ranges.js", "addMonths", [list(args) for args in cases])
    assert dict(zip(cases, answers)) == cases


def test_presets_end_on_the_last_stored_day(call_each):
    first, last = "2022-10-31", "2023-03-24"
    expected_starts = {
        "2W": "2023-03-11",  # the fetch job's window: last - 14 days < day <= last
        "1M": "2023-02-25", "3M": "2022-12-25", "1Y": "2022-03-25", "All": first,
    }
    answers = call_each("ranges.js", "presetRange", [[name, first, last] for name in
                                                     expected_starts])
    assert answers == [{"start": start, "end": last} for start in expected_starts.values()]
    march = call_each("ranges.js", "presetRange", [["1M", "2020-01-01", "2023-03-31"]])
    assert march == [{"start": "2023-03-01", "end": "2023-03-31"}], "1M ending 03-31 is March"


def test_a_range_matches_the_preset_that_gives_it(call_each):
    first, last = "2022-10-31", "2023-03-24"
    cases = {"2023-02-25": "1M", first: "All", "2023-03-11": "2W", "2023-02-24": None}
    answers = call_each("ranges.js", "matchingPreset",
                        [[{"start": start, "end": last}, first, last] for start in cases])
    assert dict(zip(cases, answers)) == cases


def test_the_address_is_read_or_refused_naming_the_parameter(call_each):
    refused = f"UrlError: symbol must be {SYMBOL_RULE}, not"
    cases = {
        "": {},
        "?symbol=brk.b": {"symbol": "BRK.B"},
        "?symbol=IBM&start_date=2023-01-02&end_date=2023-01-31&utm_source=mail":
            {"symbol": "IBM", "start": "2023-01-02", "end": "2023-01-31"},
        "?end_date=2023-01-31": {"end": "2023-01-31"},
        "?symbol=": f"{refused} “”",
        "?symbol=ABCDEFGHIJKLMNOPQ": f"{refused} “ABCDEFGHIJKLMNOPQ”",
        "?symbol=IB%20M": f"{refused} “IB M”",
        # A link's own text is cut as the API cuts what it quotes: 40 characters at most.
        f"?symbol={'A' * 40}": f"{refused} “{'A' * 40}”",
        "?symbol=”.%20Prices%20are%20delayed:%20call%20555-0100%20to%20trade.%20“":
            f"{refused} “”. Prices are delayed: call 555-0100 ...”",
        f"?end_date={'9' * 41}":
            f"UrlError: end_date must be a date written YYYY-MM-DD, not “{'9' * 37}...”",
        # Characters, as the API counts them: an emoji is two UTF-16 units, never cut in two.
        f"?symbol={'%F0%9F%98%80' * 40}": f"{refused} “{chr(0x1F600) * 40}”",
        f"?symbol={'%F0%9F%98%80' * 50}": f"{refused} “{chr(0x1F600) * 37}...”",
        "?start_date=2023-02-29":
            "UrlError: start_date must be a date written YYYY-MM-DD, not “2023-02-29”",
        "?start_date=2023-02-02&end_date=2023-02-01":
            "UrlError: start_date 2023-02-02 is after end_date 2023-02-01",
        # Two values of one parameter: the page would show one of them without a word.
        "?symbol=IBM&symbol=AAPL": "UrlError: symbol is given more than once",
        "?symbol=IBM&start_date=2023-01-02&start_date=2023-01-03":
            "UrlError: start_date is given more than once",
        "?end_date=2023-01-31&end_date=": "UrlError: end_date is given more than once",
    }
    answers = call_each("url-state.js", "readUrlState",
                        [[search, {"anchored": SYMBOL_PATTERN}, SYMBOL_RULE] for search in cases])
    assert dict(zip(cases, answers)) == cases


def test_the_last_fetch_is_worded_for_a_reader_not_as_the_api_spells_it(call_each):
    at = "2026-11-30T18:31:02Z"
    cases = {"ok": "Last fetch: ok, 2026-11-30 18:31 UTC.",
             "failed": "Last fetch: failed, 2026-11-30 18:31 UTC.",
             "not_fetched": "Last fetch: skipped (the run ended first), 2026-11-30 18:31 UTC."}
    answers = call_each("view.js", "lastFetch",
                        [[{"last_fetched_at": at, "last_fetch_status": status}]
                         for status in cases])
    assert dict(zip(cases, answers)) == cases
    assert call_each("view.js", "lastFetch", [[{"last_fetched_at": None,
                                                "last_fetch_status": None}]]) == [
        "Not fetched by the job yet."]


def test_the_volume_axis_starts_at_zero_and_an_all_zero_view_gets_a_positive_one(call_each):
    def axis(low, high):
        return {"priceRange": {"minValue": low, "maxValue": high}, "margins": None}

    cases = [[axis(0, 0)], [axis(0, 2500)], [axis(120, 2500)], [None]]
    assert call_each("chart.js", "volumeAxis", cases) == [
        axis(0, 1), axis(0, 2500), axis(0, 2500), None]
