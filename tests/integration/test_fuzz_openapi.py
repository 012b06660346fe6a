"""The API fuzzed from its own OpenAPI document: no generated request breaks a promise.

schemathesis generates requests from the committed document (which
test_openapi.py keeps equal to the served one), valid and invalid ones, and
sends them to an app on the bundled sample. It checks every answer: never a 500,
only the documented statuses and content types, bodies and headers as
declared. Two checks are left out where the API departs from the document
by design, because Swagger 2.0 cannot state the rule (README, "Errors and
other behaviour"): a start_date after the end_date is refused, and a ticker
list with repeats is answered while at most 100 tickers are distinct.
Backend-independent: it runs once, on SQLite.
"""
from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from app.cli import SWAGGER_FILE
from app.extensions import db
from tests.helpers import build_app, load_sample, sqlite_url

# Per operation and mode. The same requests every run (deterministic, no example
# database replaying earlier failures), so a failure is reproducible and nothing flakes.
EXAMPLES = 60
BY_DESIGN = [positive_data_acceptance, negative_data_rejection]

DOCUMENT = schemathesis.openapi.from_path(SWAGGER_FILE)
DOCUMENT.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                  max_examples=EXAMPLES, deterministic=True, database="none")


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory) -> Iterator[Flask]:
    folder = tmp_path_factory.mktemp("fuzzed")
    url = sqlite_url(folder)
    load_sample(url, folder / "log")
    application = build_app(url, folder / "log")
    yield application
    with application.app_context():
        db.engine.dispose()


@DOCUMENT.parametrize()
def test_no_generated_request_breaks_a_documented_promise(case, fuzzed_app):
    case.call_and_validate(app=fuzzed_app, excluded_checks=BY_DESIGN)
