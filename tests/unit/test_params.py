"""The query parameters' fields and schemas, outside a request."""
import pytest
from marshmallow import Schema, ValidationError
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import MultiDict

from app.api.params import (
    MAX_PAGE, ExportArgs, FieldList, FinancialDataArgs, QueryArgs, StatisticsArgs, Symbol,
    TickerList,
)


@pytest.mark.parametrize("field", [Symbol(), TickerList(), FieldList()])
def test_a_value_that_is_no_text_is_refused_as_marshmallow_words_it(field):
    """marshmallow raises "invalid" itself for it: the fields' own messages have other keys."""
    with pytest.raises(ValidationError) as refused:
        field.deserialize(5)
    assert refused.value.messages == ["Not a valid string."]


def _schemas(base: type[Schema] = QueryArgs) -> list[type[Schema]]:
    """Return every query schema class under ``base``."""
    return [schema for sub in base.__subclasses__() for schema in (sub, *_schemas(sub))]


def _query(schema: Schema, *pairs: tuple[str, str]) -> MultiDictProxy:
    """Return the query string as webargs hands it to ``schema.load``."""
    return MultiDictProxy(MultiDict(pairs), schema)


@pytest.mark.parametrize("schema_class", _schemas(), ids=lambda schema: schema.__name__)
def test_every_parameter_given_twice_is_refused_as_repeated(schema_class):
    schema = schema_class()
    names = [field.data_key or key for key, field in schema.fields.items()]
    query = _query(schema, *((name, "1") for name in names), *((name, "2") for name in names))
    with pytest.raises(ValidationError) as refused:
        schema.load(query)
    assert sorted(refused.value.messages) == sorted(names)
    for name in names:
        [message] = refused.value.messages[name]
        assert message.startswith("is given more than once"), (name, message)


def test_a_repeat_is_named_beside_the_other_problems_not_read_as_one_value():
    schema = FinancialDataArgs()
    query = _query(schema, ("limit", "0"), ("limit", "ten"), ("symbol", "IBM"), ("symbol", "IBM"),
                   ("page", "0"), ("colour", "red"), ("colour", "blue"))
    with pytest.raises(ValidationError) as refused:
        schema.load(query)
    assert refused.value.messages == {
        "colour": ["Unknown field."],
        "limit": ["is given more than once"],
        "page": [f"must be between 1 and {MAX_PAGE}"],
        "symbol": ["is given more than once; a list is one comma-separated value "
                   "(symbol=IBM,AAPL)"],
    }


def test_a_repeated_required_parameter_is_not_also_missing():
    schema = StatisticsArgs()
    with pytest.raises(ValidationError) as refused:
        schema.load(_query(schema, ("symbol", "IBM"), ("symbol", "AAPL"),
                           ("start_date", "2023-01-01")))
    assert refused.value.messages == {"end_date": ["is required"],
                                      "symbol": ["is given more than once"]}


def test_a_range_backwards_is_named_beside_the_other_problems():
    schema = FinancialDataArgs()
    with pytest.raises(ValidationError) as refused:
        schema.load(_query(schema, ("start_date", "2023-02-01"), ("end_date", "2023-01-01"),
                           ("limit", "0")))
    assert refused.value.messages == {
        "limit": ["must be between 1 and 1000"],
        "start_date": ["must not be after end_date (2023-02-01 > 2023-01-01)"],
    }


PAGING = "is not accepted: the export has no pages, it streams every matching row"


@pytest.mark.parametrize("pairs, messages", [
    ((("x", "1"), ("limit", "1")), {"limit": [PAGING], "x": ["Unknown field."]}),
    ((("page", "2"), ("page", "3"), ("symbol", "IBM"), ("symbol", "IBM"), ("end_date", "x")),
     {"page": [PAGING], "end_date": ["must be a date in YYYY-MM-DD format"],
      "symbol": ["is given more than once; a list is one comma-separated value "
                 "(symbol=IBM,AAPL)"]}),
])
def test_the_export_refuses_paging_beside_the_other_problems(pairs, messages):
    schema = ExportArgs()
    with pytest.raises(ValidationError) as refused:
        schema.load(_query(schema, *pairs))
    assert refused.value.messages == messages
