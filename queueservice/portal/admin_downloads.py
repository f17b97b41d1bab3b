"""One-time download tickets of the admin pages (docs/portal.md, slice 5b): the board's two
files of a new device, and the credentials file of a rotated secret.

A ticket is a random token in a link, bound to the admin's portal session, good for one
download within ``LIFETIME_MS``. The database keeps only the token's SHA-256 and what it
is for (a ``service_settings`` row ``portal_download:<sha256>``, as the calendar feed
tokens are kept), never a secret: the credentials file's secret is made at the download
itself (``AdminStore.rotate_secret``, bound to the device's ``token_generation`` when the
ticket was issued), so it exists only in that one answer. Taking a ticket deletes its row
(a compare-and-delete: of two downloads at once exactly one gets it), on every replica.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from queueservice.db import Database
from queueservice.identities import sha256_hex

#: a ticket's life: long enough to read the page and click, short enough that a link left
#: in a forgotten tab or a browser's history is dead
LIFETIME_MS = 10 * 60 * 1000
CREDENTIALS, SETTINGS = "credentials", "settings"
PREFIX = "portal_download:"
_PAST_PREFIX = "portal_download;"  # ';' follows ':': the names of tickets sort between


@dataclass(frozen=True)
class Ticket:
    """What a taken ticket lets its session download."""

    device_id: str
    file: str  # CREDENTIALS or SETTINGS
    generation: int  # the device's token_generation when it was issued


class DownloadStore:
    def __init__(self, db: Database):
        self.db = db

    def issue(self, session_hash: str, device_id: str, generation: int, files: tuple[str, ...],
              now: int) -> dict[str, str]:
        """A ticket per file for this session: {file: token}. Tickets past their life are
        deleted on the way."""
        tokens = {name: secrets.token_urlsafe(32) for name in files}
        with self.db.transaction() as conn:
            old = conn.execute("SELECT name, value FROM service_settings WHERE name > ? AND "
                               "name < ?", (PREFIX, _PAST_PREFIX)).fetchall()
            for row in old:
                if json.loads(row["value"])["expires"] <= now:
                    conn.execute("DELETE FROM service_settings WHERE name = ?", (row["name"],))
            for name, token in tokens.items():
                conn.execute("INSERT INTO service_settings (name, value) VALUES (?, ?)",
                             (PREFIX + sha256_hex(token), json.dumps({
                                 "session": session_hash, "device": device_id, "file": name,
                                 "generation": generation, "expires": now + LIFETIME_MS})))
        return tokens

    def take(self, token: str, session_hash: str, now: int) -> Ticket | None:
        """The ticket of ``token``, used up (None: unknown, used, another session's, or
        past its life). Another session's ticket is left as it is."""
        name = PREFIX + sha256_hex(token)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT value FROM service_settings WHERE name = ?",
                               (name,)).fetchone()
            if row is None:
                return None
            value = json.loads(row["value"])
            if value["session"] != session_hash:
                return None
            taken = conn.execute("DELETE FROM service_settings WHERE name = ?", (name,))
            if taken.rowcount != 1 or value["expires"] <= now:
                return None
        return Ticket(value["device"], value["file"], value["generation"])
