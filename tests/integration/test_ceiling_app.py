"""The benchmark's ceiling apps (scripts/ceiling_app.py): the bare one and the rate-limited one."""
import pytest

from scripts.ceiling_app import BODY, create_app, create_rate_limited_app
from tests.servers import http_get, production_gunicorn


def test_the_ceiling_answers_its_fixed_body():
    response = create_app().test_client().get("/api/ceiling")
    assert (response.status_code, response.get_json()) == (200, BODY)


def test_the_rate_limited_ceiling_counts_every_request_as_the_api_does(monkeypatch):
    """Its ratio shows what the API's rate limit costs only if it really counts."""
    monkeypatch.setenv("RATE_LIMIT", "3 per minute")
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "memory://")
    client = create_rate_limited_app().test_client()
    answers = [client.get("/api/ceiling") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers[:3]] == ["2", "1", "0"]


@pytest.mark.parametrize("factory", ["create_app", "create_rate_limited_app"])
def test_the_ceiling_runs_under_the_api_gunicorn_settings(tmp_path, factory):
    """`make benchmark` runs it with conf/gunicorn.conf.py, whose start hooks expect the API."""
    with production_gunicorn(tmp_path, f"scripts.ceiling_app:{factory}()", "/api/ceiling",
                             GUNICORN_WORKERS="1", RATE_LIMIT="1000 per second",
                             DATABASE_URL=f"sqlite:///{tmp_path / 'unused.db'}") as port:
        status, _, body = http_get(port, "/api/ceiling")
    assert (status, body) == (200, BODY)
