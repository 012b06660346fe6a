"""The one rule for stock symbols (lib/tickers.py)."""
import pytest

from lib.tickers import is_valid_symbol


@pytest.mark.parametrize("text", ["IBM", "BRK.B", "brk-b", "TSCO.LON", "A", "X" * 16, "7203.T"])
def test_tickers_are_accepted(text):
    assert is_valid_symbol(text)


@pytest.mark.parametrize("text", ["", "IBM\n", " IBM", ".IBM", "-X", "X" * 17, "IB M", "ÄBC",
                                  "\u0661\u0662", "IBM;", "IBM/X"])
def test_anything_else_is_refused(text):
    assert not is_valid_symbol(text)
