"""Review-page sessions are server-side (issue 22, point 5): the cookie holds a random session id, never the
API token; that id is no bearer token; logout revokes it in the store (a copied cookie stops working);
sessions expire; removing the token from SEGPIPE_TOKENS ends them. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import select

from segpipe.api.app import create_app
from segpipe.api.auth import SESSION_COOKIE
from segpipe.settings import Settings
from segpipe.stores import Stores
from segpipe.stores.models import PageSession
from segpipe.stores.page_sessions import PageSessionStore, session_digest


def _log_in(client: TestClient, token: str = "ann-token") -> str:
    answer = client.post("/ui/login", data={"token": token, "next": "/ui/models"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return answer.cookies[SESSION_COOKIE]


def _fresh(client: TestClient, cookie: str) -> TestClient:
    """Another browser that holds a copy of ``cookie``."""
    other = TestClient(client.app)
    other.cookies.set(SESSION_COOKIE, cookie)
    return other


def test_the_cookie_is_a_session_id_not_the_token(client: TestClient, stores: Stores) -> None:
    cookie = _log_in(client)
    assert "ann-token" not in cookie and len(cookie) >= 40
    with stores.db.read() as session:
        rows = list(session.scalars(select(PageSession)))
    assert [r.id_digest for r in rows] == [session_digest(cookie)], "the store keeps only the id's digest"
    assert all(cookie not in str(vars(r)) and "ann-token" not in str(vars(r)) for r in rows)
    assert client.get("/ui/models").status_code == 200
    assert client.get("/jobs").status_code == 200, "GET API calls work with the session cookie"


def test_the_session_id_is_no_bearer_token(client: TestClient) -> None:
    cookie = _log_in(client, "eng-token")
    client.cookies.clear()
    for method, path in (("GET", "/jobs"), ("POST", "/jobs")):
        answer = client.request(method, path, headers={"Authorization": f"Bearer {cookie}"},
                                json={"kind": "predict", "config": {}})
        assert answer.status_code == 401, (method, answer.text)
        assert answer.json()["error"] == "unknown bearer token"


def test_logout_revokes_the_session_everywhere(client: TestClient) -> None:
    cookie = _log_in(client)
    copy = _fresh(client, cookie)
    assert copy.get("/jobs").status_code == 200
    assert client.post("/ui/logout", follow_redirects=False).status_code == 303
    assert copy.get("/jobs").status_code == 401, "a copied cookie still works after logout"
    redirected = copy.get("/ui/models", follow_redirects=False)
    assert redirected.status_code == 303 and redirected.headers["location"].startswith("/ui/login")


def test_logout_from_another_site_revokes_nothing(client: TestClient) -> None:
    cookie = _log_in(client)
    cross = client.post("/ui/logout", headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert cross.status_code == 403
    assert _fresh(client, cookie).get("/jobs").status_code == 200


def test_an_expired_session_is_refused(client: TestClient, stores: Stores) -> None:
    digest = _log_in(client)
    assert client.get("/jobs").status_code == 200
    # a session opened 13 hours ago with the default 12-hour lifetime
    past = PageSessionStore(stores.db, now=lambda: stores.jobs.now() - timedelta(hours=13))
    old = past.create(session_digest("unused"), "annotator:x", 12 * 3600)
    assert _fresh(client, old).get("/jobs").status_code == 401
    assert digest  # the live one is untouched
    assert client.get("/jobs").status_code == 200


def test_removing_the_token_ends_its_sessions(client: TestClient, stores: Stores, settings: Settings,
                                              celery_app: Celery) -> None:
    cookie = _log_in(client, "ann-token")
    without = settings.model_copy(update={"tokens": {"eng-token": "engineer"}})
    with TestClient(create_app(without, stores, celery_app)) as restarted:
        restarted.cookies.set(SESSION_COOKIE, cookie)
        answer = restarted.get("/jobs")
        assert answer.status_code == 401 and "no longer configured" in answer.json()["error"]


def test_the_session_lifetime_is_a_setting(client: TestClient, stores: Stores, settings: Settings,
                                           celery_app: Celery) -> None:
    short = settings.model_copy(update={"page_session_hours": 0.5})
    with TestClient(create_app(short, stores, celery_app)) as app_client:
        answer = app_client.post("/ui/login", data={"token": "ann-token"}, follow_redirects=False)
        assert "Max-Age=1800" in answer.headers["set-cookie"]
        live = stores.sessions.live(answer.cookies[SESSION_COOKIE])
        assert live is not None and live.expires_at - live.created_at == timedelta(minutes=30)
