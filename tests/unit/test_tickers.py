"""The one rule for stock symbols (lib/tickers.py)."""
import pytest

from lib.tickers import distinct_tickers, is_valid_symbol, normalize_symbol


@pytest.mark.parametrize("text", ["IBM", "BRK.B", "brk-b", "TSCO.LON", "A", "X" * 16, "7203.T"])
def test_tickers_are_accepted(text):
    assert is_valid_symbol(text)


@pytest.mark.parametrize("text", ["", "IBM\n", " IBM", ".IBM", "-X", "X" * 17, "IB M", "ÄBC",
                                  "\u0661\u0662", "IBM;", "IBM/X"])
def test_anything_else_is_refused(text):
    assert not is_valid_symbol(text)


def test_distinct_tickers_are_stripped_upper_cased_once_in_order_and_blanks_skipped():
    assert distinct_tickers([" ibm", "AAPL", "", "IBM ", " ", "brk.b"]) == (
        ["IBM", "AAPL", "BRK.B"], [])


def test_distinct_tickers_name_the_names_that_are_no_ticker_as_written():
    assert distinct_tickers(["ibm", "bad symbol", "-x", "bad symbol"]) == (
        ["IBM"], ["bad symbol", "-x"])


# Letters that Unicode upper-cases into ASCII ones: dotless i, the ff ligature, long s.
@pytest.mark.parametrize("text", ["\u0131bm", "\ufb00", "\u017fpy"])
def test_a_name_that_upper_cases_into_a_ticker_is_none(text):
    assert distinct_tickers(["IBM", text]) == (["IBM"], [text])
    assert normalize_symbol(text) is None


@pytest.mark.parametrize("text, normalized", [
    (" brk.b\n", "BRK.B"), ("ibm", "IBM"), ("IBM", "IBM"),
    ("bad symbol", None), (" ", None), ("", None), (None, None), (42, None),
])
def test_normalize_symbol_strips_and_upper_cases_a_ticker_and_refuses_the_rest(text,
                                                                               normalized):
    assert normalize_symbol(text) == normalized
