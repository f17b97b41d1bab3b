"""The hand-written SQLite migrations that came before Alembic (frozen: never edit).

``MIGRATIONS[i]`` took the schema from version ``i`` to ``i + 1``, the version kept in the
``schema_version`` table. A database made before Alembic is brought to ``SCHEMA_VERSION``
(6) by these, then stamped with Alembic's baseline (``queueservice.db``); its
``schema_version`` table stays, at 6, for the record. New schema changes are Alembic
revisions (``queueservice/migrations/versions``).
"""
from __future__ import annotations

from sqlalchemy import Connection

from cloudqueue.errors import ConfigError

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema
    """
    CREATE TABLE users (
        user_id        TEXT PRIMARY KEY,
        email          TEXT NOT NULL UNIQUE,
        full_name      TEXT NOT NULL DEFAULT '',
        groups         TEXT NOT NULL DEFAULT '[]',      -- JSON list: Admin, AllDevices, ...
        team_id        TEXT,                            -- room for teams (not built)
        password_hash  TEXT,                            -- scrypt; NULL: no password login
        password_temporary INTEGER NOT NULL DEFAULT 0,  -- 1: NEW_PASSWORD_REQUIRED
        created_at     INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        key_hash    TEXT PRIMARY KEY,                   -- SHA-256 hex of the key
        user_id     TEXT NOT NULL REFERENCES users(user_id),
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );
    CREATE INDEX api_keys_user ON api_keys(user_id);
    CREATE TABLE refresh_tokens (
        token_hash  TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL REFERENCES users(user_id),
        expires_at  INTEGER NOT NULL
    );
    CREATE TABLE devices (
        device_id        TEXT PRIMARY KEY,
        name             TEXT NOT NULL,
        client_id        TEXT NOT NULL UNIQUE,
        secret_hash      TEXT NOT NULL,                 -- SHA-256 hex of the client secret
        refresh_timeout  INTEGER NOT NULL DEFAULT 60,
        reported_status  TEXT,                          -- last DeviceStatus the device sent
        last_refreshed   INTEGER,                       -- last heartbeat
        last_seen        INTEGER,                       -- last call of any kind (leases)
        config_refreshed INTEGER,                       -- last configuration upload
        config_extension TEXT,
        health           TEXT,                          -- JSON health summary
        created_at       INTEGER NOT NULL
    );
    CREATE TABLE workloads (
        work_id          TEXT PRIMARY KEY,
        device_id        TEXT NOT NULL,
        account_id       TEXT NOT NULL,                 -- owner (user id; later a team)
        user_given_name  TEXT,
        priority         TEXT NOT NULL,
        status           TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        ready_at         INTEGER,
        started_at       INTEGER,
        handed_out_at    INTEGER,                       -- last hand-out (microseconds)
        finished_at      INTEGER,
        attempts         INTEGER NOT NULL DEFAULT 0,
        device_seconds   REAL,
        error_message    TEXT,
        error_kind       TEXT,
        pending_outcome  TEXT,                          -- FAILED awaiting partial results
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        workload_sha256  TEXT,
        result_sha256    TEXT,
        has_workload     INTEGER NOT NULL DEFAULT 0,
        has_result       INTEGER NOT NULL DEFAULT 0,
        reservation_id   TEXT,                          -- room for reservations (not built)
        cost             REAL                           -- room for credits (not built)
    );
    CREATE INDEX workloads_created ON workloads(created_at DESC, work_id DESC);
    CREATE INDEX workloads_device ON workloads(device_id, created_at DESC, work_id DESC);
    CREATE INDEX workloads_account ON workloads(account_id, created_at DESC, work_id DESC);
    CREATE INDEX workloads_account_device
        ON workloads(account_id, device_id, created_at DESC, work_id DESC);
    CREATE INDEX workloads_queue
        ON workloads(device_id, status, created_at DESC, work_id DESC);
    CREATE INDEX workloads_status ON workloads(status, created_at DESC, work_id DESC);
    CREATE INDEX workloads_account_status
        ON workloads(account_id, status, created_at DESC, work_id DESC);
    CREATE TABLE idempotency (
        account_id  TEXT NOT NULL,
        key         TEXT NOT NULL,
        body_hash   TEXT NOT NULL,
        work_id     TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (account_id, key)
    );
    """,
    # 1 -> 2: progress of running work (from the device's health), mock devices
    """
    ALTER TABLE workloads ADD COLUMN programs_done INTEGER;   -- last reported progress
    ALTER TABLE workloads ADD COLUMN programs_total INTEGER;
    ALTER TABLE devices ADD COLUMN mock TEXT;                 -- JSON {Board} or {MirrorOf}
    """,
    # 2 -> 3: UserGivenName is the submitter's name again (as on the stock service); the
    # workload's own name, kept until now in user_given_name, moves to workload_name
    """
    ALTER TABLE workloads ADD COLUMN workload_name TEXT;
    UPDATE workloads SET workload_name = user_given_name;
    UPDATE workloads SET user_given_name =
        (SELECT NULLIF(full_name, '') FROM users WHERE users.user_id = workloads.account_id);
    """,
    # 3 -> 4: the admin lifecycle: disabled users, named API keys, token revocation.
    # A JWT carries the token generation of its user or device when it was issued; raising
    # the generation refuses every token issued before (admin.py, httpedge.principal).
    """
    ALTER TABLE users ADD COLUMN disabled_at INTEGER;         -- NULL: enabled
    ALTER TABLE users ADD COLUMN last_login INTEGER;          -- last password login
    ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE api_keys ADD COLUMN key_id TEXT;              -- public id (never the key)
    ALTER TABLE api_keys ADD COLUMN label TEXT;
    ALTER TABLE api_keys ADD COLUMN last_used INTEGER;        -- to the minute
    UPDATE api_keys SET key_id = lower(hex(randomblob(8))) WHERE key_id IS NULL;
    CREATE UNIQUE INDEX api_keys_key_id ON api_keys(key_id);
    CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
    """,
    # 4 -> 5: a workload's own board-time estimate, made from its file at upload
    """
    ALTER TABLE workloads ADD COLUMN estimated_seconds REAL;
    """,
    # 5 -> 6: the hand-out order from a database sequence, not the clock. One counter
    # (queue_sequence) numbers the moments work joins a device's queue (ready_seq, its
    # place in line) and is handed out (handout_seq, was handed_out_at in microseconds).
    # Work in a queue now is numbered in the order it had: by ReadyAt (then WorkId, the old
    # tie-break), then its hand-outs by their old times; the counter starts after them.
    """
    CREATE TABLE queue_sequence (value INTEGER NOT NULL);
    ALTER TABLE workloads ADD COLUMN ready_seq INTEGER;        -- place in its device's line
    ALTER TABLE workloads RENAME COLUMN handed_out_at TO handout_seq;
    CREATE TEMP TABLE renumbered AS SELECT work_id,
        status = 'READY' OR handout_seq IS NULL AS not_out,
        ROW_NUMBER() OVER (ORDER BY COALESCE(ready_at, 0), work_id) AS ready_n,
        ROW_NUMBER() OVER (PARTITION BY status = 'READY' OR handout_seq IS NULL
                           ORDER BY handout_seq, work_id) AS out_n
        FROM workloads WHERE status IN ('READY', 'EXECUTING', 'UPLOADING');
    UPDATE workloads SET handout_seq = NULL;
    UPDATE workloads SET
        ready_seq = (SELECT r.ready_n FROM renumbered r WHERE r.work_id = workloads.work_id),
        handout_seq = (SELECT CASE WHEN r.not_out THEN NULL
                                   ELSE (SELECT COUNT(*) FROM renumbered) + r.out_n END
                       FROM renumbered r WHERE r.work_id = workloads.work_id)
        WHERE work_id IN (SELECT work_id FROM renumbered);
    INSERT INTO queue_sequence (value) SELECT MAX(COALESCE(MAX(ready_seq), 0),
                                                  COALESCE(MAX(handout_seq), 0)) FROM workloads;
    DROP TABLE temp.renumbered;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def upgrade(conn: Connection, where: str) -> int:
    """Bring a pre-Alembic SQLite database to ``SCHEMA_VERSION`` in the caller's
    transaction; answers the version found. ``where`` names the database in errors."""
    found = int(conn.exec_driver_sql("SELECT version FROM schema_version").scalar_one())
    if found > SCHEMA_VERSION:
        raise ConfigError(
            f"the database {where} has schema version {found}, newer than this "
            f"qick-queue ({SCHEMA_VERSION}): upgrade qick-queue")
    for version in range(found, SCHEMA_VERSION):
        for statement in statements(MIGRATIONS[version]):
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("UPDATE schema_version SET version = ?", (version + 1,))
    return found


def statements(script: str) -> list[str]:
    """Split a migration script into statements (our scripts hold no ';' in literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
