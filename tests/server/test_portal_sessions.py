"""The portal's session store and CSRF checks, directly: the expiry rule as a table, the
store on both engines (``db``), the token and Origin comparisons, the signed login cookie;
and that ``--stock-protocol`` serves no portal."""
from __future__ import annotations

from typing import Any, Callable

import pytest
import requests

from queueservice.admin import AdminStore
from queueservice.db import Database
from queueservice.identities import IdentityStore, Principal
from queueservice.portal.csrf import (login_cookie, login_token_of, origin_ok, origin_of,
                                      tokens_match)
from queueservice.portal.sessions import (ABSOLUTE_MS, IDLE_MS, USE_RESOLUTION_MS,
                                          PortalSessionStore, session_alive)
from queueservice.tokens import Signer
from tests.conftest import QueueService

T0 = 1_800_000_000_000
HOUR = 3600 * 1000


# -- the expiry rule ---------------------------------------------------------------------
@pytest.mark.parametrize("created, last_used, revoked, now, alive", [
    (T0, T0, None, T0, True),                                    # just made
    (T0, T0, None, T0 + IDLE_MS - 1, True),                      # idle, not long enough
    (T0, T0, None, T0 + IDLE_MS, False),                         # idle 12 h
    (T0, T0 + 6 * HOUR, None, T0 + 6 * HOUR + IDLE_MS - 1, True),  # used: idle restarts
    (T0, T0 + ABSOLUTE_MS - HOUR, None, T0 + ABSOLUTE_MS - 1, True),
    (T0, T0 + ABSOLUTE_MS - HOUR, None, T0 + ABSOLUTE_MS, False),  # 7 days, however used
    (T0, T0, T0 + 1, T0 + 2, False),                             # revoked
])
def test_a_session_lives_until_idle_12_hours_7_days_old_or_revoked(
        created: int, last_used: int, revoked: int | None, now: int, alive: bool):
    row = {"created_at": created, "last_used_at": last_used, "revoked_at": revoked,
           "expires_at": created + ABSOLUTE_MS}
    assert session_alive(row, now) is alive


# -- the store (both engines) ------------------------------------------------------------
def _user(db: Database, email: str = "a@lab.test") -> dict[str, Any]:
    row, _, _ = IdentityStore(db).add_user(email, "A", [], T0)
    return row


def test_a_session_is_found_by_its_token_only_while_it_lives(db: Database):
    user = _user(db)
    store = PortalSessionStore(db)
    token, csrf = store.create(user["user_id"], T0)
    found = store.lookup(token, T0 + 1)
    assert found is not None and found.csrf_token == csrf
    assert found.user["user_id"] == user["user_id"]
    assert store.lookup("another-token", T0 + 1) is None
    assert store.lookup(token, T0 + IDLE_MS) is None  # idle 12 h


def test_use_keeps_a_session_alive_up_to_its_absolute_expiry(db: Database):
    user = _user(db)
    store = PortalSessionStore(db)
    token, _ = store.create(user["user_id"], T0)
    now = T0
    while now + IDLE_MS // 2 < T0 + ABSOLUTE_MS:
        now += IDLE_MS // 2
        assert store.lookup(token, now) is not None, now
    assert store.lookup(token, T0 + ABSOLUTE_MS) is None


def test_the_last_use_is_written_at_most_once_a_minute(db: Database):
    user = _user(db)
    store = PortalSessionStore(db)
    token, _ = store.create(user["user_id"], T0)

    def last_used() -> int:
        with db.reading() as conn:
            return conn.execute("SELECT last_used_at FROM portal_sessions").fetchone()[0]

    store.lookup(token, T0 + USE_RESOLUTION_MS - 1)
    assert last_used() == T0
    store.lookup(token, T0 + USE_RESOLUTION_MS)
    assert last_used() == T0 + USE_RESOLUTION_MS


def test_revoking_one_session_leaves_the_others(db: Database):
    user = _user(db)
    store = PortalSessionStore(db)
    first, _ = store.create(user["user_id"], T0)
    second, _ = store.create(user["user_id"], T0)
    store.revoke(store.lookup(first, T0).token_hash, T0 + 1)
    assert store.lookup(first, T0 + 2) is None
    assert store.lookup(second, T0 + 2) is not None


def test_revoking_a_user_ends_only_that_users_sessions(db: Database):
    alice, bob = _user(db, "alice@lab.test"), _user(db, "bob@lab.test")
    store = PortalSessionStore(db)
    a1, _ = store.create(alice["user_id"], T0)
    a2, _ = store.create(alice["user_id"], T0)
    b1, _ = store.create(bob["user_id"], T0)
    store.revoke_user(alice["user_id"], T0 + 1)
    assert store.lookup(a1, T0 + 2) is None and store.lookup(a2, T0 + 2) is None
    assert store.lookup(b1, T0 + 2) is not None


def test_a_password_change_or_a_disabled_user_ends_the_sessions(db: Database):
    user = _user(db)
    store = PortalSessionStore(db)
    token, _ = store.create(user["user_id"], T0)
    assert IdentityStore(db).change_password(user["user_id"], "a-new-password",
                                             user["password_hash"])
    assert store.lookup(token, T0 + 1) is None
    token, _ = store.create(user["user_id"], T0)
    admin = Principal("user", "someone-else", groups=("Admin",))
    AdminStore(db).set_disabled(user["user_id"], True, T0 + 1, caller=admin)
    assert store.lookup(token, T0 + 2) is None
    AdminStore(db).set_disabled(user["user_id"], False, T0 + 3, caller=admin)
    assert store.lookup(token, T0 + 4) is None  # enabling does not revive it


def test_a_disabled_users_live_row_is_refused_at_the_lookup(db: Database):
    """Even a session row the revocation missed stops with its user's account."""
    user = _user(db)
    store = PortalSessionStore(db)
    token, _ = store.create(user["user_id"], T0)
    with db.transaction() as conn:
        conn.execute("UPDATE users SET disabled_at = ? WHERE user_id = ?",
                     (T0 + 1, user["user_id"]))
    assert store.lookup(token, T0 + 2) is None


def test_ended_sessions_are_deleted_when_a_new_one_is_made(db: Database):
    user = _user(db)
    store = PortalSessionStore(db)
    store.create(user["user_id"], T0)
    store.create(user["user_id"], T0 + ABSOLUTE_MS + 1)
    with db.reading() as conn:
        assert conn.execute("SELECT COUNT(*) FROM portal_sessions").fetchone()[0] == 1


# -- CSRF --------------------------------------------------------------------------------
@pytest.mark.parametrize("expected, given, match", [
    ("abc", "abc", True), ("abc", "abd", False), ("abc", None, False), ("abc", "", False),
    ("", "", False), ("abc", "abcd", False), ("åbc", "åbc", True)])
def test_csrf_tokens_match_only_when_equal_and_not_empty(expected: str, given: str | None,
                                                         match: bool):
    assert tokens_match(expected, given) is match


@pytest.mark.parametrize("origin, own, ok", [
    (None, "http://127.0.0.1:8000", True),                    # not sent: nothing to check
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000", True),
    ("HTTP://127.0.0.1:8000", "http://127.0.0.1:8000/", True),
    ("https://queue.lab", "https://queue.lab:443/dev", True),  # default port, a path
    ("https://evil.example", "https://queue.lab", False),
    ("http://queue.lab", "https://queue.lab", False),          # another scheme
    ("https://queue.lab:8443", "https://queue.lab", False),    # another port
    ("https://queue.lab.evil.example", "https://queue.lab", False),
    ("null", "https://queue.lab", False),
])
def test_the_origin_must_be_the_services_own(origin: str | None, own: str, ok: bool):
    assert origin_ok(origin, own) is ok


def test_origin_of_drops_the_path_and_default_ports():
    assert origin_of("https://Queue.Lab:443/dev/x") == "https://queue.lab"
    assert origin_of("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


def test_the_login_cookie_carries_its_forms_token_and_cannot_be_forged():
    signer = Signer(b"s" * 32)
    token, cookie = login_cookie(signer)
    assert login_token_of(signer, cookie) == token
    assert login_token_of(Signer(b"t" * 32), cookie) == ""     # another service's secret
    assert login_token_of(signer, cookie[:-2] + "xx") == ""     # tampered
    assert login_token_of(signer, None) == ""
    other = signer.issue({"sub": "u", "token_use": "session", "csrf": token}, 60)
    assert login_token_of(signer, other) == ""                 # another kind of token


# -- the stock protocol ------------------------------------------------------------------
def test_the_stock_protocol_serves_no_portal(
        queue_service_factory: Callable[..., QueueService]):
    service = queue_service_factory(stock_protocol=True)
    for path in ("/", "/login", "/keys", "/portal/static/portal.css"):
        resp = requests.get(service.root + path, allow_redirects=False, timeout=30)
        assert resp.status_code == 403 and "<html" not in resp.text, path
