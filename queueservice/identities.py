"""Users, their API keys and passwords, devices and their secrets, refresh tokens.

Secrets are stored only as hashes: API keys, device secrets and refresh tokens as SHA-256
(they are long random strings), passwords with scrypt and a per-user salt. Every
comparison of a secret uses ``hmac.compare_digest``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from cloudqueue.errors import AuthError, BadRequest, Conflict, Forbidden, NotFound
from queueservice import logins
from queueservice.clock import now_ms
from queueservice.db import Database

#: what to do about an unknown DeviceId, in words for CLI and HTTP callers alike
NO_DEVICE_HINT = "check the DeviceId against the list of devices (`userclient devices`)"

Row = dict[str, Any]
API_KEY_PREFIX = "qk_"
KNOWN_GROUPS = ("Admin", "AllDevices")
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_api_key() -> str:
    """``qk_`` and 43 url-safe characters (32 random bytes)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        # Spend the same time as a real check, so a wrong user looks like a wrong password.
        hashlib.scrypt(password.encode(), salt=b"0" * 16, dklen=32, **_SCRYPT)
        return False
    _, salt_b64, digest_b64 = stored.split("$")
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), dklen=32,
                            **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def temporary_password() -> str:
    """A random password that meets Cognito's default policy (upper, lower, digit, symbol)."""
    return "Tmp-" + secrets.token_urlsafe(12) + "a7!"


def password_fingerprint(stored: str | None) -> str:
    """A short digest of a stored password hash: what a NEW_PASSWORD_REQUIRED ``Session``
    is bound to, so it dies with the password it was issued for."""
    return sha256_hex(stored or "")[:16]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (``kind='user'``) or a device (``kind='device'``)."""

    kind: str
    id: str
    email: str | None = None
    groups: tuple[str, ...] = ()
    #: a user's full name ('' when none was given)
    full_name: str = ""

    @property
    def is_admin(self) -> bool:
        return self.kind == "user" and "Admin" in self.groups

    @property
    def is_user(self) -> bool:
        return self.kind == "user"


def user_principal_of(row: Row) -> Principal:
    """The Principal of a user row (``httpedge.principal`` checks it is enabled first)."""
    return Principal("user", row["user_id"], row["email"], tuple(json.loads(row["groups"])),
                     row["full_name"] or "")


#: ``api_keys.last_used`` is written at most once in this many milliseconds per key
KEY_USE_RESOLUTION_MS = 60_000


def require_enabled(user: Row) -> None:
    """Forbidden (403) when an admin disabled this user: every credential of theirs stops."""
    if user.get("disabled_at") is not None:
        raise Forbidden(f"the account {user['email']} is disabled: ask an admin to enable it",
                        kind="user_disabled")


def insert_api_key(conn: Any, api_key: str, user_id: str, now: int, label: str | None) -> str:
    """Store a new API key (its SHA-256 only) in an open transaction; answers its KeyId."""
    key_id = secrets.token_hex(8)
    conn.execute("INSERT INTO api_keys (key_hash, user_id, created_at, key_id, label) "
                 "VALUES (?, ?, ?, ?, ?)", (sha256_hex(api_key), user_id, now, key_id, label))
    return key_id


def revoke_portal_sessions(conn: Any, user_id: str, now: int) -> None:
    """End every web portal session of this user, in an open transaction (a password
    change, a disabled account, "log out everywhere")."""
    conn.execute("UPDATE portal_sessions SET revoked_at = ? "
                 "WHERE user_id = ? AND revoked_at IS NULL", (now, user_id))


class IdentityStore:
    def __init__(self, db: Database):
        self.db = db

    # -- users -------------------------------------------------------------------------
    def add_user(self, email: str, full_name: str, groups: list[str], now: int, *,
                 with_password: bool = True) -> tuple[Row, str, str | None]:
        """A new user with an API key (and a temporary password): (row, api_key, password)."""
        unknown = [g for g in groups if g not in KNOWN_GROUPS]
        if unknown:
            raise BadRequest(f"unknown group(s) {unknown}: use {list(KNOWN_GROUPS)}")
        groups = sorted(set(groups) | {"AllDevices"})
        user_id = str(uuid.uuid4())
        api_key = new_api_key()
        password = temporary_password() if with_password else None
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone():
                raise Conflict(f"a user with e-mail {email} already exists")
            conn.execute(
                "INSERT INTO users (user_id, email, full_name, groups, password_hash, "
                "password_temporary, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user_id, email, full_name, json.dumps(groups),
                 hash_password(password) if password else None, 1 if password else 0, now))
            insert_api_key(conn, api_key, user_id, now, "created with the user")
            row = dict(conn.execute("SELECT * FROM users WHERE user_id = ?",
                                    (user_id,)).fetchone())
        return row, api_key, password

    def user(self, user_id: str) -> Row | None:
        with self.db.reading() as conn:
            r = conn.execute("SELECT * FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return dict(r) if r else None

    def by_api_key(self, api_key: str) -> Principal | None:
        """The user of a valid API key (None: unknown or revoked; Forbidden: disabled)."""
        with self.db.reading() as conn:
            r = conn.execute(
                "SELECT u.*, k.key_hash, k.last_used AS key_last_used FROM api_keys k "
                "JOIN users u ON u.user_id = k.user_id "
                "WHERE k.key_hash = ? AND k.revoked_at IS NULL", (sha256_hex(api_key),)).fetchone()
        if r is None:
            return None
        require_enabled(dict(r))
        self._note_key_use(r["key_hash"], r["key_last_used"])
        return user_principal_of(dict(r))

    def _note_key_use(self, key_hash: str, last_used: int | None) -> None:
        """Record an API key's use, at most once a minute (one write, not one per request)."""
        now = now_ms()
        if last_used is not None and now - last_used < KEY_USE_RESOLUTION_MS:
            return
        with self.db.transaction() as conn:
            conn.execute("UPDATE api_keys SET last_used = ? WHERE key_hash = ?", (now, key_hash))

    def login(self, email: str, password: str) -> Row:
        """Check a password login; answers the user row (``password_temporary`` may be 1)."""
        r = self.password_user(email, password)
        if r["disabled_at"] is not None:
            raise AuthError("User is disabled.")  # Cognito's words, after a right password
        self._note_login(r["user_id"])
        return r

    def password_user(self, email: str, password: str) -> Row:
        """The user whose e-mail and password these are (AuthError: not so, or too many
        wrong ones in a row: ``logins``). Every password check goes through here."""
        now = now_ms()
        with self.db.reading() as conn:
            count = logins.standing(conn, email)
            if logins.refused_until(count, now) is not None:
                raise AuthError(logins.ATTEMPTS_EXCEEDED)
            r = conn.execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
        stored = r["password_hash"] if r else None
        if not check_password(password, stored) or r is None:
            with self.db.transaction() as conn:
                logins.note_failure(conn, email, now)
            raise AuthError("Incorrect username or password.")
        if count is not None:
            with self.db.transaction() as conn:
                logins.note_success(conn, email)
        return dict(r)

    def _note_login(self, user_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE users SET last_login = ? WHERE user_id = ?",
                         (now_ms(), user_id))

    def change_password(self, user_id: str, password: str, previous_hash: str | None) -> bool:
        """Set a user's (permanent) password if the stored hash is still ``previous_hash``,
        and end every refresh token and web portal session issued before: True when changed.

        The compare-and-set makes a challenge ``Session`` (bound to the hash it was issued
        for, ``password_fingerprint``) single-use, even for two answers racing each other.
        """
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE users SET password_hash = ?, password_temporary = 0 "
                "WHERE user_id = ? AND password_hash IS NOT DISTINCT FROM ?",
                (hash_password(password), user_id, previous_hash)).rowcount
            if changed:
                conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))
                revoke_portal_sessions(conn, user_id, now_ms())
        return bool(changed)

    def new_refresh_token(self, user_id: str, now: int, lifetime_s: int) -> str:
        token = secrets.token_urlsafe(48)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM refresh_tokens WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO refresh_tokens (token_hash, user_id, expires_at) "
                         "VALUES (?, ?, ?)", (sha256_hex(token), user_id, now + lifetime_s * 1000))
        return token

    def by_refresh_token(self, token: str, now: int) -> Row:
        with self.db.reading() as conn:
            r = conn.execute("SELECT user_id, expires_at FROM refresh_tokens "
                             "WHERE token_hash = ?", (sha256_hex(token),)).fetchone()
        if r is None or r["expires_at"] < now:
            raise AuthError("Invalid Refresh Token")
        user = self.user(r["user_id"])
        if user is None:
            raise AuthError("Invalid Refresh Token")
        if user["disabled_at"] is not None:  # its tokens were deleted; one made since too
            raise AuthError("User is disabled.")
        return user

    # -- devices -----------------------------------------------------------------------
    def add_device(self, name: str, refresh_timeout: int, now: int,
                   mock: dict | None = None) -> tuple[Row, str]:
        """A new device and its OAuth2 client: (row, client_secret). ``mock``: the device is
        a simulated board the service runs itself (``{"Board": ...}`` or ``{"MirrorOf": ...}``)."""
        device_id = str(uuid.uuid4())
        client_id = secrets.token_hex(13)
        secret = secrets.token_urlsafe(40)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO devices (device_id, name, client_id, secret_hash, refresh_timeout, "
                "created_at, mock) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (device_id, name, client_id, sha256_hex(secret), refresh_timeout, now,
                 json.dumps(mock) if mock is not None else None))
            row = dict(conn.execute("SELECT * FROM devices WHERE device_id = ?",
                                    (device_id,)).fetchone())
        return row, secret

    def device(self, device_id: str) -> Row | None:
        with self.db.reading() as conn:
            r = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return dict(r) if r else None

    def require_device(self, device_id: str) -> Row:
        row = self.device(device_id)
        if row is None:
            raise NotFound(f"no device {device_id}: {NO_DEVICE_HINT}")
        return row

    def devices(self) -> list[Row]:
        with self.db.reading() as conn:
            rows = conn.execute("SELECT * FROM devices ORDER BY created_at, device_id").fetchall()
        return [dict(r) for r in rows]

    def mock_devices(self) -> list[Row]:
        """The devices the service runs itself (simulated boards)."""
        with self.db.reading() as conn:
            rows = conn.execute("SELECT * FROM devices WHERE mock IS NOT NULL "
                                "ORDER BY created_at, device_id").fetchall()
        return [dict(r) for r in rows]

    def new_secret(self, device_id: str) -> str:
        """Replace a device's client secret and end the tokens issued before; answers the
        new secret (a mock's board daemon gets a fresh one at each start, in its 0600
        credentials file: a daemon left running by a replica that died, when another
        replica takes the mock over, can no longer call the service)."""
        secret = secrets.token_urlsafe(40)
        with self.db.transaction() as conn:
            conn.execute("UPDATE devices SET secret_hash = ?, "
                         "token_generation = token_generation + 1 WHERE device_id = ?",
                         (sha256_hex(secret), device_id))
        return secret

    def device_by_client(self, client_id: str, secret: str) -> Row:
        """The device whose OAuth2 client id and secret these are (else AuthError). A client
        id holding a NUL (from a Basic header or the form) is no stored id, and PostgreSQL
        refuses it as a parameter: not looked up."""
        r = None
        if "\x00" not in client_id:
            with self.db.reading() as conn:
                r = conn.execute("SELECT * FROM devices WHERE client_id = ?",
                                 (client_id,)).fetchone()
        given = sha256_hex(secret)
        expected = r["secret_hash"] if r else sha256_hex("")
        if not hmac.compare_digest(given, expected) or r is None:
            raise AuthError("the client id or secret is wrong")
        return dict(r)

    def heartbeat(self, device_id: str, status: str, extension: str, health: dict | None,
                  now: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE devices SET reported_status = ?, last_refreshed = ?, last_seen = ?, "
                "config_extension = ?, health = COALESCE(?, health) WHERE device_id = ?",
                (status, now, now, extension,
                 json.dumps(health) if health is not None else None, device_id))

    def mark_status(self, device_id: str, status: str, health: dict, now: int) -> None:
        """The service's own word on a device it runs (a mock whose daemon cannot start):
        shown as a heartbeat would be, without counting as the device's call (leases)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE devices SET reported_status = ?, last_refreshed = ?, "
                         "health = ? WHERE device_id = ?",
                         (status, now, json.dumps(health), device_id))

    def config_uploaded(self, device_id: str, now: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE devices SET config_refreshed = ? WHERE device_id = ?",
                         (now, device_id))
