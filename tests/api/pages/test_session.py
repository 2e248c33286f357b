"""Logging in to the review pages (no browser): redirects, the cookie's flags, cross-site posts, open redirects."""

from __future__ import annotations

from fastapi.testclient import TestClient

from segpipe.api.auth import SESSION_COOKIE


def test_pages_redirect_to_the_login_form(sqlite_client: TestClient) -> None:
    answer = sqlite_client.get("/ui/jobs?state=running", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Fjobs%3Fstate%3Drunning"
    form = sqlite_client.get("/ui/login")
    assert form.status_code == 200 and "script-src 'self'" in form.headers["content-security-policy"]
    assert sqlite_client.get("/ui/static/overlay.js").status_code == 200  # no data in static files


def test_login_sets_a_read_only_session_cookie(sqlite_client: TestClient) -> None:
    answer = sqlite_client.post("/ui/login", data={"token": "ann-token", "next": "/ui/models"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/models"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert sqlite_client.get("/ui/models").status_code == 200
    assert sqlite_client.get("/jobs").status_code == 200, "GET API calls work with the cookie"
    refused = sqlite_client.post("/jobs", json={"kind": "predict", "config": {}})
    assert refused.status_code == 401, "changes need the Authorization header"
    assert sqlite_client.post("/ui/logout", follow_redirects=False).status_code == 303
    sqlite_client.cookies.clear()
    assert sqlite_client.get("/ui/models", follow_redirects=False).status_code == 303


def test_login_refuses_cross_site_posts_and_open_redirects(sqlite_client: TestClient) -> None:
    cross = sqlite_client.post("/ui/login", data={"token": "ann-token"}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and "another site" in cross.json()["error"]
    for target in ("https://evil.example/", "//evil.example/ui", "/jobs"):
        answer = sqlite_client.post("/ui/login", data={"token": "ann-token", "next": target}, follow_redirects=False)
        assert answer.headers["location"] == "/ui/jobs", target


def test_bad_tokens_and_unknown_jobs(sqlite_client: TestClient) -> None:
    answer = sqlite_client.post("/ui/login", data={"token": "nope"})
    assert answer.status_code == 401 and "unknown bearer token" in answer.text
    assert sqlite_client.post("/ui/login", data={"token": "x" * 600}).status_code == 422
    sqlite_client.post("/ui/login", data={"token": "ann-token"})
    missing = sqlite_client.get("/ui/jobs/0123456789abcdef")
    assert missing.status_code == 404 and "0123456789abcdef" in missing.json()["error"]
