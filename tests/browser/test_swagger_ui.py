"""Swagger UI in a real browser: a developer's first "Try it out" answers with data.

The app serves the bundled sample that `make run` loads. On every operation,
"Try it out" then "Execute", with nothing but what the page fills in
(examples, else defaults), must answer 200 with data; the CSV export is
offered as a file to download, not shown as text.
"""
import json

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.helpers import build_app


def rows_of(text: str, content_type: str) -> list:
    """Return the data rows of an answer: JSON's ``data`` (or health's status), CSV's lines."""
    if content_type.startswith("text/csv"):
        return text.splitlines()[1:]
    body = json.loads(text)
    data = body.get("data", body.get("status") == "ok")
    return data if isinstance(data, list) else [data] if data else []


def execute(browser, operation: WebElement) -> dict:
    """Open an operation, "Try it out", "Execute"; return what the page showed and received.

    The bounds and patterns it shows per parameter come along (``extensions``).
    """
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    browser.wait_for(lambda: operation.find_elements(By.CSS_SELECTOR, ".try-out__btn"),
                     "the Try it out button")
    extensions = {row.get_attribute("data-param-name"): [
        shown.text for shown in row.find_elements(By.CSS_SELECTOR, ".parameter__extension")]
        for row in operation.find_elements(By.CSS_SELECTOR, "tr[data-param-name]")}
    operation.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    browser.wait_for(lambda: operation.find_elements(By.CSS_SELECTOR, ".execute"),
                     "the Execute button")
    operation.find_element(By.CSS_SELECTOR, ".execute").click()
    shown = browser.wait_for(lambda: operation.find_elements(
        By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"), "the answer")
    path = operation.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
        "data-path")
    answer = browser.async_script(RECEIVED, path)
    downloads = [link.get_attribute("download") for link in operation.find_elements(
        By.CSS_SELECTOR, ".live-responses-table a[download]")]
    return {"path": path, "extensions": extensions, "shown": shown[0].text,
            "status": answer["status"], "downloads": downloads,
            "content_type": answer["content_type"], "text": answer["text"],
            "url": operation.find_element(By.CSS_SELECTOR, ".request-url pre").text}


# The answer Swagger UI holds for a GET: its body is text, or a Blob when offered as a file.
RECEIVED = """
const [path, done] = arguments;
const answer = window.ui.specSelectors.responseFor(path, 'get');
const body = answer.get('text');
Promise.resolve(body instanceof Blob ? body.text() : body).then((text) => done({
  status: answer.get('status'), content_type: answer.getIn(['headers', 'content-type']), text}));
"""


@pytest.mark.parametrize("sample_database_url", ["sqlite"], indirect=True)
def test_try_it_out_answers_every_operation_with_data(browser, serve, sample_database_url,
                                                      tmp_path):
    app = build_app(sample_database_url, tmp_path / "log")
    paths = sorted(app.test_client().get("/api/swagger.json").get_json()["paths"])
    server = serve(app)
    browser.open(server.url + "/api/docs")
    tags = browser.wait_for(lambda: browser.driver.find_elements(By.CSS_SELECTOR, ".opblock-tag"),
                            "the operations' sections")
    for tag in tags:  # the page opens with every section closed
        tag.click()
    operations = browser.wait_for(lambda: len(found := browser.driver.find_elements(
        By.CSS_SELECTOR, ".opblock-get")) == len(paths) and found, "every operation")
    answers = [execute(browser, operation) for operation in operations]
    assert sorted(answer["path"] for answer in answers) == paths
    for answer in answers:
        assert (answer["shown"], answer["status"]) == ("200", 200), answer
        assert rows_of(answer["text"], answer["content_type"]), answer
    shown = {answer["path"]: answer["extensions"] for answer in answers}
    downloads = {answer["path"]: answer["downloads"] for answer in answers}
    assert downloads == {path: ["financial_data.csv"] if path.endswith("/export") else []
                         for path in paths}
    assert shown["/financial_data"]["limit"] == ["minimum: 1", "maximum: 1000"]
    assert shown["/statistics"]["symbol"] == ["pattern: ^[A-Za-z0-9][A-Za-z0-9.\\-]{0,15}$"]
    browser.screenshot("swagger-ui-try-it-out")
