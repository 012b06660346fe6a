"""The committed OpenAPI document is the one the app serves."""
import json

from app.cli import SWAGGER_FILE, openapi_document


def test_committed_document_equals_the_served_one(sqlite_app):
    with sqlite_app.app_context():
        served = openapi_document()
    assert SWAGGER_FILE.read_text(encoding="utf-8") == served, (
        "conf/api.swagger.json is stale: run `flask --app app openapi`")


def test_document_lists_every_parameter_bound_and_status(sqlite_client):
    document = sqlite_client.get("/api/swagger.json").get_json()
    listing = document["paths"]["/financial_data"]["get"]
    params = {param["name"]: param for param in listing["parameters"]}
    assert set(params) == {"start_date", "end_date", "symbol", "fields", "limit", "page"}
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 1000)
    assert params["page"]["minimum"] == 1
    assert set(listing["responses"]) == {"200", "400", "405", "500", "503"}
    assert (params["symbol"]["type"], params["symbol"]["collectionFormat"]) == ("array", "csv")
    assert params["fields"]["items"]["enum"][-1] == "all"
    assert params["fields"]["default"] == ["symbol", "date", "open_price", "close_price",
                                           "volume"]
    export = document["paths"]["/financial_data/export"]["get"]
    assert {param["name"] for param in export["parameters"]} == {
        "start_date", "end_date", "symbol", "fields"}
    assert export["produces"] == ["text/csv", "application/json"]
    assert export["responses"]["200"]["schema"]["type"] == "string"
    assert set(export["responses"]) == {"200", "400", "405", "500", "503"}
    record = document["definitions"]["PriceRecord"]["properties"]
    assert [name for name, field in record.items() if field.get("x-nullable")] == [
        "high_price", "low_price", "adjusted_close_price", "dividend_amount",
        "split_coefficient"]
    stats = document["paths"]["/statistics"]["get"]
    assert all(param["required"] for param in stats["parameters"])
    assert set(stats["responses"]) == {"200", "400", "404", "405", "500", "503"}
    assert set(document["paths"]["/health"]["get"]["responses"]) == {"200", "503"}
    for path, default_limit in (("/symbols", 100), ("/fetch_runs", 20)):
        listing = document["paths"][path]["get"]
        params = {param["name"]: param for param in listing["parameters"]}
        assert set(params) == {"limit", "page"}
        assert (params["limit"]["default"], params["limit"]["minimum"],
                params["limit"]["maximum"]) == (default_limit, 1, 1000)
        assert set(listing["responses"]) == {"200", "400", "405", "500", "503"}


def test_swagger_ui_is_served(sqlite_client):
    response = sqlite_client.get("/api/docs")
    assert response.status_code == 200
    assert "swagger" in response.get_data(as_text=True).lower()
    assert json.loads(sqlite_client.get("/api/swagger.json").data)["basePath"] == "/api"
