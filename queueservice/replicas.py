"""What replicas of one service share through PostgreSQL, beyond the tables.

- ``ChangeListener``: a long poll parked on this replica wakes when another replica changes
  its device's queue. Every workload change sends a notice when its transaction commits
  (``db.Connection.notify``: ``NOTIFY`` with ``<origin>:<device id>``); the listener
  ``LISTEN``s on its own connection and hands each device id from another origin to this
  replica's wake-ups. Lost while the connection is down, notices are made up for: after
  every reconnect it wakes every waiter, who looks again.
- ``Leadership``: one replica at a time runs a job that must not run twice (the mock
  devices' board daemons): a session advisory lock on its own connection. When the replica
  dies, PostgreSQL ends its session and frees the lock, and another replica takes over at
  its next try.

On SQLite (one process) the listener is not started and the leadership is always held.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from qickbase.backoff import Backoff
from queueservice.db import CHANGES_CHANNEL, CONNECT_TIMEOUT_SECONDS, Database, libpq_url, lock_key

log = logging.getLogger("qick_queue")

#: how often the listener looks up from its wait (to notice ``stop``)
LISTEN_TICK_SECONDS = 1.0


def own_connection(db: Database) -> Any:
    """A connection of its own to the shared database, outside the pool (autocommit), for a
    replica's long-lived job (listening, holding a session lock)."""
    import psycopg  # the postgres extra: present wherever the database is shared

    return psycopg.connect(libpq_url(db.engine), autocommit=True,
                           connect_timeout=CONNECT_TIMEOUT_SECONDS)


class ChangeListener:
    """A thread that ``LISTEN``s for other replicas' queue changes: ``on_change(device_id)``
    for each, ``on_change(None)`` (wake everyone) after each (re)connect."""

    def __init__(self, db: Database, on_change: Callable[[Optional[str]], None]):
        self.db = db
        self.on_change = on_change
        self.backoff = Backoff(base=0.2, cap=5.0)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        #: connected and listening now (``/readyz`` says when not)
        self.listening = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(LISTEN_TICK_SECONDS * 3)

    def _run(self) -> None:
        import psycopg  # the postgres extra: present wherever a listener runs

        attempt = 0
        while not self._stop.is_set():
            try:
                with own_connection(self.db) as conn:
                    conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    self.listening, attempt = True, 0
                    self.on_change(None)  # whatever changed while not listening
                    self._listen(conn)
            except psycopg.Error as exc:
                if self.listening or attempt == 0:
                    log.warning("change listener lost the database (%s): reconnecting",
                                type(exc).__name__)
            finally:
                self.listening = False
            self._stop.wait(self.backoff.delay(attempt))
            attempt += 1

    def _listen(self, conn: Any) -> None:
        prefix = self.db.origin + ":"
        while not self._stop.is_set():
            for notice in conn.notifies(timeout=LISTEN_TICK_SECONDS):
                if not notice.payload.startswith(prefix):
                    self.on_change(notice.payload.split(":", 1)[-1])
            conn.execute("SELECT 1")  # a dead connection raises here, not only on a notice


class Leadership:
    """Whether this replica runs a one-at-a-time job (``name``) now. ``hold()`` tries to
    become (or checks it still is) the one: True while it holds the lock on its own
    connection; a lost connection is a lost leadership (the caller stops the job)."""

    def __init__(self, db: Database, name: str):
        self.db = db
        self.key = lock_key(name)
        self._conn: Any = None

    def hold(self) -> bool:
        if not self.db.shared:
            return True
        import psycopg  # the postgres extra: present wherever the database is shared

        try:
            if self._conn is not None:
                self._conn.execute("SELECT 1")
                return True
            conn = own_connection(self.db)
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]:
                self._conn = conn
                return True
            conn.close()
            return False
        except psycopg.Error:
            self.release()
            return False

    def release(self) -> None:
        """Give the job up (closing the connection frees the lock)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: closed either way
                pass
