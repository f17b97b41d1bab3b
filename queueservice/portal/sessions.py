"""The portal's sessions, kept on the server (table ``portal_sessions``).

The cookie carries a random token; the row keeps only its SHA-256, with the user, the
session's CSRF token, its creation, last use, absolute expiry and revocation. A session
ends 12 hours after its last use (``IDLE_MS``) or 7 days after it began (``ABSOLUTE_MS``),
whichever comes first, and at once when revoked (logging out; a password change and a
disabled account revoke all of the user's: ``identities.revoke_portal_sessions``). A
disabled user's session is refused at the lookup as well, so it stops at the next request
even if the revocation were missed. The last use is written at most once a minute
(``USE_RESOLUTION_MS``): one write per minute per session, not one per page.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from queueservice.db import Database
from queueservice.identities import revoke_portal_sessions, sha256_hex

Row = dict[str, Any]

IDLE_MS = 12 * 3600 * 1000
ABSOLUTE_MS = 7 * 24 * 3600 * 1000
USE_RESOLUTION_MS = 60_000


def session_alive(row: Row, now: int) -> bool:
    """The expiry rule: not revoked, not past its absolute expiry, used within IDLE_MS."""
    return (row["revoked_at"] is None and now < row["expires_at"]
            and now - row["last_used_at"] < IDLE_MS)


@dataclass(frozen=True)
class PortalSession:
    """A live session: its token's hash, its CSRF token, and its user's row."""

    token_hash: str
    csrf_token: str
    user: Row


class PortalSessionStore:
    def __init__(self, db: Database):
        self.db = db

    def create(self, user_id: str, now: int) -> tuple[str, str]:
        """A new session for this user: (the cookie's token, the CSRF token). Sessions that
        have ended (expired, or revoked a day ago) are deleted on the way."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM portal_sessions WHERE expires_at < ? OR revoked_at < ?",
                         (now, now - 24 * 3600 * 1000))
            conn.execute("INSERT INTO portal_sessions (token_hash, user_id, csrf_token, "
                         "created_at, last_used_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (sha256_hex(token), user_id, csrf, now, now, now + ABSOLUTE_MS))
        return token, csrf

    def lookup(self, token: str, now: int) -> PortalSession | None:
        """The live session of a cookie's token, with its user (None: unknown, ended, or
        its user disabled); notes the use."""
        token_hash = sha256_hex(token)
        with self.db.reading() as conn:
            r = conn.execute(
                "SELECT s.*, u.disabled_at AS user_disabled_at FROM portal_sessions s "
                "JOIN users u ON u.user_id = s.user_id WHERE s.token_hash = ?",
                (token_hash,)).fetchone()
            if r is None or r["user_disabled_at"] is not None or not session_alive(dict(r), now):
                return None
            user = dict(conn.execute("SELECT * FROM users WHERE user_id = ?",
                                     (r["user_id"],)).fetchone())
        if now - r["last_used_at"] >= USE_RESOLUTION_MS:
            with self.db.transaction() as conn:
                conn.execute("UPDATE portal_sessions SET last_used_at = ? WHERE token_hash = ?",
                             (now, token_hash))
        return PortalSession(token_hash, r["csrf_token"], user)

    def revoke(self, token_hash: str, now: int) -> None:
        """End one session (logging out)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE portal_sessions SET revoked_at = ? "
                         "WHERE token_hash = ? AND revoked_at IS NULL", (now, token_hash))

    def revoke_user(self, user_id: str, now: int) -> None:
        """End every session of this user."""
        with self.db.transaction() as conn:
            revoke_portal_sessions(conn, user_id, now)
