"""Review-page sessions: created at login, looked up on every page view, revoked at logout.

The session id handed to the browser is 256 random bits; the store keeps only its SHA-256, so reading the
table (a backup, a replica) yields no cookie that works. Expired and revoked rows are purged at each
login. A session never stands in for an API token: `segpipe.api.auth` looks session ids up here and
bearer tokens up in ``SEGPIPE_TOKENS``, never one in the other's place.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update

from segpipe.stores.db import Store, changed
from segpipe.stores.models import PageSession, utcnow

SESSION_ID_BYTES = 32


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class PageSessionStore:
    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = now

    def create(self, token_digest: str, principal: str, lifetime_seconds: float) -> str:
        """A new session for the token with SHA-256 ``token_digest``; returns its id (for the cookie only)."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        now = self.now()
        with self.store.write() as session:
            session.execute(delete(PageSession).where(
                or_(PageSession.expires_at <= now, PageSession.revoked_at.is_not(None))))
            session.add(PageSession(id_digest=session_digest(session_id), token_digest=token_digest,
                                    principal=principal, created_at=now,
                                    expires_at=now + timedelta(seconds=lifetime_seconds)))
        return session_id

    def live(self, session_id: str) -> PageSession | None:
        """The session, if it exists, has not expired and was not revoked."""
        with self.store.read() as session:
            row = session.get(PageSession, session_digest(session_id))
        if row is None or row.revoked_at is not None or row.expires_at <= self.now():
            return None
        return row

    def revoke(self, session_id: str) -> bool:
        """End the session now; False when there was no live one."""
        with self.store.write() as session:
            return changed(session, update(PageSession)
                           .where(PageSession.id_digest == session_digest(session_id),
                                  PageSession.revoked_at.is_(None))
                           .values(revoked_at=self.now())) > 0
