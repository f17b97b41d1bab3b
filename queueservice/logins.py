"""Password guessing slowed down: after ``LOCK_AFTER`` wrong passwords in a row for one
e-mail address, its password logins are refused for a while, doubling with each further
wrong one up to ``MAX_LOCK_MS``, as Cognito user pools do (the refusal is Cognito's own
``NotAuthorizedException: Password attempts exceeded``). A right password ends the count.

Every place a password is checked goes through here: the Cognito-compatible login and
``ChangePassword``, the portal's login and "change my password". The count is kept in the
database (``login_failures``, one row per address, keyed by the SHA-256 of the address in
lower case, unknown addresses alike, so a refusal says nothing of whether the account
exists), so it holds across replicas and restarts. A count left alone ``FORGET_MS`` starts
over.

``locked_until`` is the policy, a pure function; the rest reads and writes its row.
"""
from __future__ import annotations

import hashlib
from typing import Optional

from queueservice.db import Connection

LOCK_AFTER = 5
FIRST_LOCK_MS = 1_000
MAX_LOCK_MS = 15 * 60 * 1000
FORGET_MS = 24 * 3600 * 1000
ATTEMPTS_EXCEEDED = "Password attempts exceeded"
#: the same refusal in words for a person (the portal's pages)
ATTEMPTS_EXCEEDED_HELP = ("Password attempts exceeded: too many wrong passwords in a row for "
                          "this account. Wait a little (at most "
                          f"{MAX_LOCK_MS // 60000} minutes), then try again.")


def locked_until(failures: int, last_failure_at: int) -> Optional[int]:
    """Until when password logins are refused after ``failures`` wrong ones in a row, the
    last at ``last_failure_at`` (None: not locked). The 5th wrong one locks for 1 s, each
    further one doubles it, up to 15 minutes."""
    if failures < LOCK_AFTER:
        return None
    lock = min(FIRST_LOCK_MS * 2 ** min(failures - LOCK_AFTER, 30), MAX_LOCK_MS)
    return last_failure_at + lock


def subject_of(email: str) -> str:
    """The row's key: the SHA-256 of the address as typed, trimmed, in lower case."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def standing(conn: Connection, email: str) -> Optional[dict]:
    """This address's count of wrong passwords in a row and the time of the last (None:
    no wrong one since its last right one)."""
    row = conn.execute("SELECT failures, last_failure_at FROM login_failures "
                       "WHERE subject = ?", (subject_of(email),)).fetchone()
    return dict(row) if row is not None else None


def refused_until(count: Optional[dict], now: int) -> Optional[int]:
    """Until when password logins are refused, given the address's ``standing`` (None:
    they may try now); a count left alone ``FORGET_MS`` no longer counts."""
    if count is None or now - count["last_failure_at"] >= FORGET_MS:
        return None
    until = locked_until(count["failures"], count["last_failure_at"])
    return until if until is not None and now < until else None


def note_failure(conn: Connection, email: str, now: int) -> None:
    """One more wrong password for this address (a count left alone ``FORGET_MS`` starts
    over at one)."""
    conn.execute(
        "INSERT INTO login_failures (subject, failures, last_failure_at) VALUES (?, 1, ?) "
        "ON CONFLICT (subject) DO UPDATE SET failures = CASE WHEN ? - "
        "login_failures.last_failure_at >= ? THEN 1 ELSE login_failures.failures + 1 END, "
        "last_failure_at = ?", (subject_of(email), now, now, FORGET_MS, now))


def note_success(conn: Connection, email: str) -> None:
    """A right password: the count ends."""
    conn.execute("DELETE FROM login_failures WHERE subject = ?", (subject_of(email),))
