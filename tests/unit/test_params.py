"""The query parameters' own fields, outside a request."""
import pytest
from marshmallow import ValidationError

from app.api.params import FieldList, Symbol, TickerList


@pytest.mark.parametrize("field", [Symbol(), TickerList(), FieldList()])
def test_a_value_that_is_no_text_is_refused_as_marshmallow_words_it(field):
    """marshmallow raises "invalid" itself for it: the fields' own messages have other keys."""
    with pytest.raises(ValidationError) as refused:
        field.deserialize(5)
    assert refused.value.messages == ["Not a valid string."]
