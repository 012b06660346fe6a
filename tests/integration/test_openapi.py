"""The OpenAPI document: valid Swagger 2.0, equal to the committed file, and true.

True: what Swagger UI pre-fills answers each operation's documented 200 on
the bundled sample, each documented error is what that endpoint sends, and
every answer matches the schema its status declares.
"""
import json
from urllib.parse import urlencode

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV2SpecValidator

from app.api.docs import EXAMPLE_RATE_LIMIT
from app.cli import SWAGGER_FILE, openapi_document
from tests.helpers import build_app, closed, masked

# The committed document; the first test holds it equal to the served one.
DOCUMENT = json.loads(SWAGGER_FILE.read_text(encoding="utf-8"))
OPERATIONS = {path: item["get"] for path, item in DOCUMENT["paths"].items()}
EXAMPLES = [(path, status) for path, operation in OPERATIONS.items()
            for status, response in operation["responses"].items() if "examples" in response]

# Requests that make each endpoint answer its documented 400 and 404; /health
# takes no parameter, and answers 400 only to a bad Host, as any path does.
BAD_HOST = {"Host": "a..b"}
BAD_QUERIES = {
    "/financial_data": "limit=0",
    "/financial_data/export": "limit=5",
    "/statistics": "symbol=IBM&start_date=2023-03-01",
    "/symbols": "page=0",
    "/fetch_runs": "limit=ten",
}
NOT_FOUND_QUERIES = {"/statistics": "symbol=IBM&start_date=2023-04-01&end_date=2023-04-30"}
UNREACHABLE_DATABASE = "mysql+pymysql://api:secret@127.0.0.1:1/financial"


def test_committed_document_equals_the_served_one(sqlite_app):
    with sqlite_app.app_context():
        served = openapi_document()
    assert SWAGGER_FILE.read_text(encoding="utf-8") == served, (
        "conf/api.swagger.json is stale: run `make openapi`")


def test_the_document_is_valid_swagger_2():
    errors = [f"{list(error.path)}: {error.message}"
              for error in OpenAPIV2SpecValidator(DOCUMENT).iter_errors()]
    assert errors == []


def test_the_description_names_each_answer_that_is_no_envelope():
    not_envelopes = set()
    for path, operation in OPERATIONS.items():
        schema = operation["responses"]["200"]["schema"]
        if "$ref" not in schema:  # the CSV export
            continue
        model = DOCUMENT["definitions"][schema["$ref"].rsplit("/", 1)[1]]
        if not {"data", "info"} <= model["properties"].keys():
            not_envelopes.add(path)
    assert not_envelopes == {"/health"}
    description = " ".join(DOCUMENT["info"]["description"].split())
    assert "Two are not: " in description
    exceptions = description.split("Two are not: ", 1)[1].split(". ", 1)[0]
    assert all(f"`{path}`" in exceptions for path in not_envelopes)


def test_the_document_lists_only_errors_a_request_can_cause(sample_client):
    # No top-level responses named after the server's exception classes: each
    # operation lists its own errors.
    assert "responses" not in DOCUMENT
    names = set(json.dumps(DOCUMENT).split('"'))
    assert not {"FinancialError", "HTTPException", "MaskError"} & names
    # No resource applies RESTX field masks, so X-Fields cannot cause a mask error.
    path = "/api/statistics?symbol=IBM&start_date=2023-03-01&end_date=2023-03-31"
    plain = sample_client.get(path)
    assert plain.status_code == 200
    with_mask = sample_client.get(path, headers={"X-Fields": "{data{symbol"})
    assert (with_mask.status_code, with_mask.get_json()) == (200, plain.get_json())


def test_document_lists_every_parameter_bound_and_status():
    listing = OPERATIONS["/financial_data"]
    params = {param["name"]: param for param in listing["parameters"]}
    assert set(params) == {"start_date", "end_date", "symbol", "fields", "limit", "page"}
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 1000)
    assert params["page"]["minimum"] == 1
    assert (params["symbol"]["type"], params["symbol"]["collectionFormat"]) == ("array", "csv")
    assert params["symbol"]["items"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9.\\-]{0,15}$"
    assert params["fields"]["items"]["enum"][-1] == "all"
    assert params["fields"]["default"] == ["symbol", "date", "open_price", "close_price",
                                           "volume"]
    export = OPERATIONS["/financial_data/export"]
    assert {param["name"] for param in export["parameters"]} == {
        "start_date", "end_date", "symbol", "fields"}
    assert export["produces"] == ["text/csv", "application/json"]
    assert export["responses"]["200"]["schema"]["type"] == "string"
    record = DOCUMENT["definitions"]["PriceRecord"]["properties"]
    assert {name for name, field in record.items() if field.get("x-nullable")} == {
        "high_price", "low_price", "adjusted_close_price", "dividend_amount",
        "split_coefficient"}
    statistics = OPERATIONS["/statistics"]
    assert all(param["required"] for param in statistics["parameters"])
    assert {param["name"]: param.get("pattern") for param in statistics["parameters"]}[
        "symbol"] == "^[A-Za-z0-9][A-Za-z0-9.\\-]{0,15}$"
    lists = {"200", "304", "400", "405", "412", "429", "500", "503"}
    assert {path: set(operation["responses"]) for path, operation in OPERATIONS.items()} == {
        "/financial_data": lists, "/symbols": lists, "/fetch_runs": lists,
        "/financial_data/export": lists, "/statistics": lists | {"404"},
        "/health": {"200", "304", "400", "405", "412", "500", "503"}}
    for path, default_limit in (("/symbols", 100), ("/fetch_runs", 20)):
        params = {param["name"]: param for param in OPERATIONS[path]["parameters"]}
        assert set(params) == {"limit", "page"}
        assert (params["limit"]["default"], params["limit"]["minimum"],
                params["limit"]["maximum"]) == (default_limit, 1, 1000)


LIST_PARAMS = [(path, param["name"]) for path in ("/financial_data", "/financial_data/export")
               for param in OPERATIONS[path]["parameters"] if param["type"] == "array"]


def test_both_list_parameters_of_both_listings_are_checked():
    assert sorted(LIST_PARAMS) == [("/financial_data", "fields"), ("/financial_data", "symbol"),
                                   ("/financial_data/export", "fields"),
                                   ("/financial_data/export", "symbol")]


@pytest.mark.parametrize("path, name", LIST_PARAMS)
def test_list_bounds_are_what_the_endpoint_accepts(sqlite_client, path, name):
    """A list the document allows is answered; one below or above its bounds is refused."""
    param = {param["name"]: param for param in OPERATIONS[path]["parameters"]}[name]
    assert param["minItems"] == 1
    base = {"symbol": "IBM", "fields": "date"}
    assert closed(sqlite_client.get(f"/api{path}?{urlencode(base)}")).status_code == 200
    assert sqlite_client.get(f"/api{path}?{urlencode({**base, name: ''})}").status_code == 400
    if name != "symbol":
        assert "maxItems" not in param  # any number of known fields, repeats included
        return
    tickers = [f"T{number}" for number in range(param["maxItems"] + 1)]
    allowed = closed(sqlite_client.get(f"/api{path}?{urlencode({name: ','.join(tickers[:-1])})}"))
    assert allowed.status_code == 200
    refused = sqlite_client.get(f"/api{path}?{urlencode({name: ','.join(tickers)})}")
    assert refused.status_code == 400
    # Stricter than the API, by design: repeats count for the document, not for the API.
    repeated = closed(sqlite_client.get(
        f"/api{path}?{urlencode({name: ','.join(['IBM'] * 101)})}"))
    assert repeated.status_code == 200


def test_every_response_with_a_body_has_its_own_example_matching_its_schema():
    for path, operation in OPERATIONS.items():
        for status, response in operation["responses"].items():
            if status == "304":
                assert set(response) == {"description"}
                continue
            (content_type, example), = response["examples"].items()
            if content_type == "application/json":
                assert_matches_schema(example, response["schema"])


def texts_of(node, found=None) -> list[str]:
    """Every summary and description in ``node``, at any depth."""
    found = [] if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("summary", "description") and isinstance(value, str):
                found.append(value)
            else:
                texts_of(value, found)
    elif isinstance(node, list):
        for item in node:
            texts_of(item, found)
    return found


def test_descriptions_are_not_broken_mid_paragraph():
    """Swagger UI shows each line break: a paragraph is one line; an indented block, its own."""
    texts = texts_of(DOCUMENT)
    assert len(texts) > 100
    for text in texts:
        for paragraph in text.split("\n\n"):
            lines = paragraph.split("\n")
            assert len(lines) == 1 or all(line.startswith("    ") for line in lines), paragraph


def test_every_model_field_says_what_it_holds():
    """Each field has a description, and dates and times their format, as a client reads them."""
    formats = {}
    for name, definition in DOCUMENT["definitions"].items():
        for field, schema in definition["properties"].items():
            assert schema.get("description") or "$ref" in schema, (name, field)
            formats[f"{name}.{field}"] = schema.get("format")
    dated = {key for key, value in formats.items() if value == "date"}
    timed = {key for key, value in formats.items() if value == "date-time"}
    assert dated == {"PriceRecord.date", "Statistics.start_date", "Statistics.end_date",
                     "Symbol.first_date", "Symbol.last_date", "FetchRunSymbol.newest_date"}
    assert timed == {"Symbol.last_fetched_at", "FetchRun.started_at", "FetchRun.finished_at"}


def test_nullable_values_are_marked():
    definitions = DOCUMENT["definitions"]
    nullable = {(model, name) for model, definition in definitions.items()
                for name, field in definition["properties"].items() if field.get("x-nullable")}
    assert {("ListError", "pagination"), ("Symbol", "last_fetched_at"),
            ("Symbol", "last_fetch_status"), ("FetchRun", "finished_at"),
            ("FetchRun", "message"), ("FetchRunSymbol", "newest_date"),
            ("FetchRunSymbol", "error"), ("Health", "schema")} <= nullable


def test_every_key_is_required_but_the_fields_a_client_picks():
    """Responses always hold every key, except a price record's (``fields`` picks them)."""
    for name, definition in DOCUMENT["definitions"].items():
        required = set(definition.get("required", ()))
        expected = set() if name == "PriceRecord" else set(definition["properties"])
        assert required == expected, name


def prefilled_query(operation: dict) -> str:
    """The query Swagger UI sends after "Try it out" and "Execute": examples, else defaults."""
    values = {}
    for param in operation.get("parameters", []):
        value = param.get("x-example", param.get("default"))
        if value is not None:
            values[param["name"]] = ",".join(value) if isinstance(value, list) else value
    return urlencode(values)


@pytest.mark.parametrize("path", sorted(OPERATIONS))
def test_what_swagger_ui_prefills_answers_the_documented_example(sample_client, path):
    operation = OPERATIONS[path]
    response = sample_client.get(f"/api{path}?{prefilled_query(operation)}")
    assert response.status_code == 200, response.get_data(as_text=True)
    documented_headers = set(operation["responses"]["200"].get("headers", {}))
    assert documented_headers <= set(response.headers.keys())
    if path == "/financial_data/export":  # what it sends, documented too
        assert documented_headers >= {"ETag", "X-Row-Count", "Content-Disposition"}
    (content_type, example), = operation["responses"]["200"]["examples"].items()
    if content_type == "text/csv":
        assert response.content_type == "text/csv; charset=utf-8"
        assert response.get_data(as_text=True).startswith(example)
        return
    body = response.get_json()
    assert masked(body) == masked(example)
    assert_matches_schema(body, operation["responses"]["200"]["schema"])


@pytest.fixture
def failing_app(sqlite_database_url, tmp_path):
    """An app in which every request fails unexpectedly (a bug anywhere)."""
    application = build_app(sqlite_database_url, tmp_path / "log")

    @application.before_request
    def _fail() -> None:
        raise RuntimeError("a bug")

    return application


def test_every_documented_error_is_what_its_endpoint_sends(sqlite_client, failing_app,
                                                           sample_client, sqlite_database_url,
                                                           tmp_path):
    limited = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=EXAMPLE_RATE_LIMIT)
    limited_client = limited.test_client()
    while limited_client.get("/api/nothing").status_code != 429:
        pass
    clients = {
        "400": lambda path: (sqlite_client.get(f"/api{path}?{BAD_QUERIES[path]}")
                             if path in BAD_QUERIES
                             else sqlite_client.get(f"/api{path}", headers=BAD_HOST)),
        "404": lambda path: sqlite_client.get(f"/api{path}?{NOT_FOUND_QUERIES[path]}"),
        "405": lambda path: sqlite_client.delete(f"/api{path}"),
        "412": lambda path: sample_client.get(f"/api{path}?{prefilled_query(OPERATIONS[path])}",
                                              headers={"If-Match": '"any"'}),
        "429": lambda path: limited_client.get(f"/api{path}"),
        "500": lambda path: failing_app.test_client().get(f"/api{path}"),
        "503": lambda path: build_app(UNREACHABLE_DATABASE, tmp_path / "log").test_client().get(
            f"/api{path}?{prefilled_query(OPERATIONS[path])}"),
    }
    checked = []
    for path, status in EXAMPLES:
        if status == "200":
            continue
        response = clients[status](path)
        documented = OPERATIONS[path]["responses"][status]
        assert response.status_code == int(status), (path, response.get_data(as_text=True))
        assert response.get_json() == documented["examples"]["application/json"], (path, status)
        assert set(documented.get("headers", {})) <= set(response.headers.keys()), (path, status)
        assert_matches_schema(response.get_json(), documented["schema"])
        checked.append((path, status))
    assert len(checked) == 6 * 5 + 5 + 1, "every error of every operation, 404 of statistics"


def assert_matches_schema(body, schema: dict) -> None:
    jsonschema.Draft4Validator(json_schema(schema)).validate(body)


def json_schema(schema: dict) -> dict:
    """Turn a Swagger 2.0 schema into a strict JSON Schema.

    $refs are inlined, ``x-nullable`` also allows null, and objects allow no
    property they do not declare.
    """
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return json_schema({**DOCUMENT["definitions"][name],
                            **{key: value for key, value in schema.items() if key != "$ref"}})
    converted = {key: value for key, value in schema.items()
                 if key not in ("x-nullable", "example", "properties", "items", "allOf")}
    if "properties" in schema:
        converted["properties"] = {name: json_schema(field)
                                   for name, field in schema["properties"].items()}
        converted["additionalProperties"] = False
    if "items" in schema:
        converted["items"] = json_schema(schema["items"])
    if "allOf" in schema:
        converted["allOf"] = [json_schema(part) for part in schema["allOf"]]
    if schema.get("x-nullable"):
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def test_the_schema_check_can_fail():
    page = OPERATIONS["/financial_data"]["responses"]["200"]
    body = page["examples"]["application/json"]
    for broken in ({**body, "pagination": None}, {**body, "extra": 1},
                   {**body, "data": [{**body["data"][0], "volume": 5}]},
                   {key: value for key, value in body.items() if key != "info"}):
        with pytest.raises(jsonschema.ValidationError):
            assert_matches_schema(broken, page["schema"])
    errors = OPERATIONS["/financial_data"]["responses"]["400"]
    assert_matches_schema({"data": [], "pagination": None, "info": {"error": "x"}},
                          errors["schema"])


def test_swagger_ui_is_served(sqlite_client):
    response = sqlite_client.get("/api/docs")
    assert response.status_code == 200
    assert "swagger" in response.get_data(as_text=True).lower()
    assert json.loads(sqlite_client.get("/api/swagger.json").data)["basePath"] == "/api"
