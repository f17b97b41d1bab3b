"""The admin lifecycle over SQLite (sync, no HTTP): users listed, disabled and enabled; API
keys created, listed and revoked; a device's secret rotated, the device renamed or deleted.

Revocation takes effect on the next request: a revoked API key is no longer found, a
disabled user's every credential is refused where the request's identity is read
(``httpedge.principal``), and JWTs issued before a revocation are refused by their token
generation (``tokens.revoked``), raised here in the same transaction as the change.
"""
from __future__ import annotations

import json
import secrets
from typing import Any

from cloudqueue.errors import BadRequest, Conflict, NotFound
from queueservice import logins, mockspec, policy, transitions, workloads
from queueservice.db import Database
from queueservice.identities import (NO_DEVICE_HINT, Principal, hash_password, insert_api_key,
                                     new_api_key, revoke_portal_sessions, sha256_hex,
                                     temporary_password)

Row = dict[str, Any]
NO_USER_HINT = "check it against the list of users (`userclient users`)"


class AdminStore:
    def __init__(self, db: Database):
        self.db = db

    # -- users -------------------------------------------------------------------------
    def users(self) -> list[Row]:
        """Every user, oldest first, with ``last_key_use`` (their latest API key use)."""
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT u.*, (SELECT MAX(k.last_used) FROM api_keys k "
                "WHERE k.user_id = u.user_id) AS last_key_use "
                "FROM users u ORDER BY u.created_at, u.user_id").fetchall()
        return [dict(r) for r in rows]

    def find_user(self, ref: str) -> Row:
        """A user by UserId or e-mail (NotFound otherwise)."""
        with self.db.reading() as conn:
            r = conn.execute(
                "SELECT u.*, (SELECT MAX(k.last_used) FROM api_keys k "
                "WHERE k.user_id = u.user_id) AS last_key_use "
                "FROM users u WHERE u.user_id = ? OR u.email = ?", (ref, ref)).fetchone()
        if r is None:
            raise NotFound(f"no user {ref}: {NO_USER_HINT}")
        return dict(r)

    def set_disabled(self, ref: str, disabled: bool, now: int, *, caller: Principal) -> Row:
        """Disable (every credential refused from the next request on; refresh tokens
        deleted; JWTs and web portal sessions revoked) or enable (API keys work again; old
        JWTs stay revoked). Doing it twice changes nothing. An admin cannot disable their
        own account."""
        user = self.find_user(ref)
        if disabled and user["user_id"] == caller.id:
            raise Conflict("you cannot disable your own account (another admin can)",
                           kind="self_disable")
        with self.db.transaction() as conn:
            if disabled:
                conn.execute("UPDATE users SET disabled_at = ?, "
                             "token_generation = token_generation + 1 "
                             "WHERE user_id = ? AND disabled_at IS NULL", (now, user["user_id"]))
                conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user["user_id"],))
                revoke_portal_sessions(conn, user["user_id"], now)
            else:
                conn.execute("UPDATE users SET disabled_at = NULL WHERE user_id = ?",
                             (user["user_id"],))
        return self.find_user(user["user_id"])

    def reset_password(self, ref: str, now: int) -> tuple[Row, str]:
        """A new temporary password for this user (shown once): the next password login
        asks for a password of their own, as the first one did. The old password stops at
        once; refresh tokens and web portal sessions end; the count of wrong passwords
        starts over (``logins``). API keys keep working (they are revoked one by one).
        This is how a person who forgot their password gets back in, and how the first
        admin (made by ``init`` without a password) gets one for the web portal."""
        user = self.find_user(ref)
        password = temporary_password()
        with self.db.transaction() as conn:
            conn.execute("UPDATE users SET password_hash = ?, password_temporary = 1 "
                         "WHERE user_id = ?", (hash_password(password), user["user_id"]))
            conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user["user_id"],))
            revoke_portal_sessions(conn, user["user_id"], now)
            logins.note_success(conn, user["email"])
        return self.find_user(user["user_id"]), password

    # -- API keys ----------------------------------------------------------------------
    def create_api_key(self, user_id: str, label: str | None, now: int) -> tuple[Row, str]:
        """A new API key for this user: (its row, the key itself, to be shown once)."""
        self.find_user(user_id)
        api_key = new_api_key()
        with self.db.transaction() as conn:
            key_id = insert_api_key(conn, api_key, user_id, now, label)
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        return dict(row), api_key

    def api_keys(self, user_id: str) -> list[Row]:
        """A user's API keys that still work, oldest first."""
        with self.db.reading() as conn:
            rows = conn.execute("SELECT * FROM api_keys WHERE user_id = ? AND revoked_at IS NULL "
                                "ORDER BY created_at, key_id", (user_id,)).fetchall()
        return [dict(r) for r in rows]

    def revoke_api_key(self, key_id: str, now: int, *, caller: Principal) -> Row:
        """Revoke a key: its owner or an admin (anyone else: NotFound, existence hidden).
        Revoking a revoked key answers it unchanged. The owner may not revoke their last
        key when they have no password either: nothing would let them in any more."""
        with self.db.transaction() as conn:
            key = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
            if key is None or not (caller.is_admin or key["user_id"] == caller.id):
                raise NotFound(f"no API key {key_id} of yours: check the KeyId against "
                               "`userclient api-keys`")
            if key["revoked_at"] is not None:
                return dict(key)
            if key["user_id"] == caller.id:
                others = conn.execute(
                    "SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL "
                    "AND key_id != ?", (caller.id, key_id)).fetchone()[0]
                password = conn.execute("SELECT password_hash FROM users WHERE user_id = ?",
                                        (caller.id,)).fetchone()[0]
                if not others and not password:
                    raise Conflict(f"API key {key_id} is your last way in (you have no "
                                   "password): create another key first (`userclient "
                                   "create-api-key`), then revoke this one",
                                   kind="last_credential")
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (now, key_id))
            return dict(conn.execute("SELECT * FROM api_keys WHERE key_id = ?",
                                     (key_id,)).fetchone())

    # -- devices -----------------------------------------------------------------------
    def _device(self, conn: Any, device_id: str) -> Row:
        r = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        if r is None:
            raise NotFound(f"no device {device_id}: {NO_DEVICE_HINT}")
        return dict(r)

    def rotate_secret(self, device_id: str, *,
                      generation: int | None = None) -> tuple[Row, str]:
        """A new client secret (shown once); the old one stops at once for /oauth2/token,
        and the device's tokens issued before are revoked. ``generation``: only if the
        device's ``token_generation`` is still this one (else Conflict): a secret made
        from an older view of the device would be dead on arrival."""
        secret = secrets.token_urlsafe(40)
        with self.db.transaction() as conn:
            device = self._device(conn, device_id)
            if device["mock"] is not None:
                raise Conflict(f"device {device_id} is a mock device: the queue service keeps "
                               "its secret itself (a new one at each start)", kind="mock_device")
            if generation is not None and device["token_generation"] != generation:
                raise Conflict(f"device {device_id} has had a new secret since: rotate its "
                               "secret again for a credentials file that works",
                               kind="secret_changed")
            conn.execute("UPDATE devices SET secret_hash = ?, "
                         "token_generation = token_generation + 1 WHERE device_id = ?",
                         (sha256_hex(secret), device_id))
            return self._device(conn, device_id), secret

    def rename_device(self, device_id: str, name: str) -> Row:
        with self.db.transaction() as conn:
            self._device(conn, device_id)
            conn.execute("UPDATE devices SET name = ? WHERE device_id = ?", (name, device_id))
            return self._device(conn, device_id)

    def delete_device(self, device_id: str, now: int, *,
                      cancel_work: bool) -> tuple[Row, list[str]]:
        """Delete a device and its credentials; answers (its last row, the WorkIds
        cancelled). Its unfinished work (CREATED, READY, EXECUTING, UPLOADING) refuses the
        delete (409) unless ``cancel_work``: then it is CANCELLED at once. Finished work
        and its files stay, readable by their owners. A device a mock mirrors is refused."""
        with self.db.transaction() as conn:
            device = self._device(conn, device_id)
            mirrors = [r["device_id"] for r in conn.execute(
                "SELECT device_id, mock FROM devices WHERE mock IS NOT NULL").fetchall()
                if mockspec.mirror_of(dict(r)) == device_id]
            if mirrors:
                raise Conflict(f"device {device_id} is mirrored by mock device(s) "
                               f"{', '.join(mirrors)}: delete them first", kind="mirrored")
            marks = ", ".join("?" * len(policy.TERMINAL))
            open_work = [r["work_id"] for r in conn.execute(
                f"SELECT work_id FROM workloads WHERE device_id = ? AND status NOT IN ({marks}) "
                "ORDER BY created_at, work_id",  # the id: one order for work of one ms on
                (device_id, *policy.TERMINAL)).fetchall()]  # both engines (not the rowid's)
            if open_work and not cancel_work:
                raise Conflict(f"device {device_id} has {len(open_work)} unfinished "
                               "workload(s) (queued or running): wait for them, or delete "
                               "with --cancel-work (CancelWork=true) to cancel them",
                               kind="device_busy")
            deleted = transitions.DeviceDeleted(device_id, device["name"])
            for work_id in open_work:
                row = dict(conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                                        (work_id,)).fetchone())
                workloads.write(conn, work_id, row,
                                transitions.transition(work_id, row, deleted, now))
            conn.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
        return device, open_work


def user_view(row: Row) -> dict[str, Any]:
    """``GET /users`` items."""
    return {
        "UserId": row["user_id"],
        "Email": row["email"],
        "FullName": row["full_name"],
        "Groups": json.loads(row["groups"]),
        "Disabled": row["disabled_at"] is not None,
        "DisabledAt": policy.iso(row["disabled_at"]),
        "CreatedAt": policy.iso(row["created_at"]),
        "LastLogin": policy.iso(row["last_login"]),
        "LastKeyUse": policy.iso(row.get("last_key_use")),
    }


def api_key_view(row: Row) -> dict[str, Any]:
    """``GET /api-keys`` items: never the key, which is stored only as a hash."""
    return {
        "KeyId": row["key_id"],
        "UserId": row["user_id"],
        "Label": row["label"],
        "CreatedAt": policy.iso(row["created_at"]),
        "LastUsed": policy.iso(row["last_used"]),
        "RevokedAt": policy.iso(row["revoked_at"]),
    }


def check_name(value: Any, what: str, max_len: int = 200) -> str:
    """A non-empty name (device name, key label) of at most ``max_len`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be a non-empty string")
    if len(value) > max_len or not value.isprintable():
        raise BadRequest(f"{what} must be at most {max_len} printable characters")
    return value.strip()
