"""The portal's staged uploads (table ``portal_uploads``; docs/portal.md slice 4), sync.

A workload file uploaded on the submit page is checked, then held until its user confirms
it: its bytes in the file store under ``staging/{upload_id}`` (never in a form field), the
choices made with it in a row. The ``upload_id`` is the confirm form's token; it works only
in the portal session that uploaded the file, for ``STAGED_MS``. Confirming records the
workload it became (``confirmed``): the file is removed then, the row stays until its
expiry so that a second confirm (a double click, a retried POST) finds the same workload.
``sweep`` removes what has expired, file and row (the service's housekeeping).
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from cloudqueue.errors import NotFound
from queueservice.db import Database
from queueservice.errors import StorageUnavailable
from queueservice.files import STAGING, FileStore, Staged

log = logging.getLogger("qick_queue")

Row = dict[str, Any]
#: how long an upload waits for its confirmation (30 minutes)
STAGED_MS = 30 * 60 * 1000
#: the most expired uploads one sweep removes (the next sweep takes the rest)
SWEEP_BATCH = 100


def staging_key(upload_id: str) -> str:
    return f"{STAGING}/{upload_id}"


class UploadStore:
    def __init__(self, db: Database, files: FileStore):
        self.db = db
        self.files = files

    def stage(self, staged: Staged, *, session_hash: str, user_id: str, device_id: str,
              priority: str, team_id: str | None, timeslot: bool,
              workload_name: str | None, file_name: str, now: int) -> Row:
        """Keep a checked upload until it is confirmed: the file put in the store, then its
        row. Answers the row (``upload_id``: the confirm form's token)."""
        upload_id = str(uuid.uuid4())
        self.files.commit(staged, staging_key(upload_id))
        row = {"upload_id": upload_id, "session_hash": session_hash, "user_id": user_id,
               "device_id": device_id, "priority": priority, "team_id": team_id,
               "timeslot": int(timeslot), "workload_name": workload_name,
               "file_name": file_name, "sha256": staged.sha256, "size": staged.size,
               "created_at": now, "expires_at": now + STAGED_MS}
        try:
            with self.db.transaction() as conn:
                conn.execute(f"INSERT INTO portal_uploads ({', '.join(row)}) VALUES "
                             f"({', '.join('?' for _ in row)})", tuple(row.values()))
        except BaseException:
            with contextlib.suppress(StorageUnavailable):
                self.files.delete(staging_key(upload_id))
            raise
        return {**row, "work_id": None}

    def pending(self, upload_id: str, session_hash: str, now: int) -> Row:
        """The upload of this token made in this session and not expired; NotFound for any
        other (unknown, expired, or another session's: which, is not said)."""
        with self.db.reading() as conn:
            r = conn.execute("SELECT * FROM portal_uploads WHERE upload_id = ?",
                             (upload_id,)).fetchone()
        if r is None or r["session_hash"] != session_hash or r["expires_at"] <= now:
            raise NotFound("this upload is not waiting to be confirmed: it expired (after "
                           f"{STAGED_MS // 60000} minutes), or was made in another session: "
                           "upload the file again")
        return dict(r)

    def fetch(self, row: Row) -> Staged:
        """The upload's bytes, staged locally to be put in place as the workload's file."""
        return self.files.fetch(staging_key(row["upload_id"]))

    def confirmed(self, upload_id: str, work_id: str) -> None:
        """The upload became workload ``work_id``: noted, and its file removed."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE portal_uploads SET work_id = ? WHERE upload_id = ?",
                         (work_id, upload_id))
        self.files.delete(staging_key(upload_id))

    def sweep(self, now: int) -> int:
        """Remove expired uploads (their files, then their rows), at most SWEEP_BATCH;
        answers how many."""
        with self.db.reading() as conn:
            ids = [r["upload_id"] for r in conn.execute(
                "SELECT upload_id FROM portal_uploads WHERE expires_at <= ? "
                f"ORDER BY expires_at LIMIT {SWEEP_BATCH}", (now,)).fetchall()]
        for upload_id in ids:
            self.files.delete(staging_key(upload_id))
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM portal_uploads WHERE upload_id = ?", (upload_id,))
        if ids:
            log.info("%d portal upload(s) past their %d minutes: removed", len(ids),
                     STAGED_MS // 60000)
        return len(ids)
