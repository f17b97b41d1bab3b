"""The workload store on a real SQLite file (tmp_path) and on a real PostgreSQL server
(tests/pgserver.py), no HTTP: transitions applied with a compare-and-set, the hand-out
order from the queue sequence, the sweeps, the upgrade of version 5 and 6 databases that
hold work (made before Alembic), the schema Alembic makes equal to the one declared."""
from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from cloudqueue.errors import ConfigError, Conflict, NotFound
from queueservice import facility, transitions
from queueservice.admin import AdminStore
from queueservice.db import HEAD, Database, alembic_config
from queueservice.legacy import MIGRATIONS, SCHEMA_VERSION, statements
from queueservice.schema import metadata
from queueservice.settings import ServiceLimits
from queueservice.workloads import WorkloadStore, write

T0 = 1_700_000_000_000  # ms


def add_device(db: Database, last_seen: int | None = None) -> str:
    device_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute("INSERT INTO devices (device_id, name, client_id, secret_hash, "
                     "created_at, last_seen) VALUES (?, 'board', ?, 'x', ?, ?)",
                     (device_id, device_id, T0, last_seen))
    return device_id


def submit(store: WorkloadStore, device_id: str, now: int = T0, priority: str = "MEDIUM",
           upload_at: int | None = None) -> str:
    """A workload; READY when ``upload_at`` is given (its file arrived then)."""
    row, created = store.create(account_id="a", device_id=device_id, priority=priority,
                                user_given_name=None, sha256=None, now=now)
    assert created and row["status"] == "CREATED" and row["created_at"] == now
    if upload_at is not None:
        assert store.workload_uploaded(row["work_id"], upload_at)["status"] == "READY"
    return row["work_id"]


def test_a_workload_walks_from_submit_to_done(db):
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    work = submit(store, device, upload_at=T0 + 1)
    handed, ended = store.claim(device, store.sequence_mark())
    assert handed["work_id"] == work and handed["status"] == "EXECUTING" and ended == []
    assert handed["attempts"] == 1 and handed["started_at"] is not None
    assert store.record_progress(device, work, 2, 4)
    assert store.report(device, work, outcome="DONE", device_seconds=1.5,
                        now=T0 + 9)["status"] == "UPLOADING"
    assert not store.record_progress(device, work, 3, 4)  # no longer EXECUTING: dropped
    store.check_results_upload(work)
    done = store.results_uploaded(work, T0 + 10)
    assert (done["status"], done["has_result"], done["device_seconds"]) == ("DONE", 1, 1.5)
    assert done["finished_at"] == T0 + 10


def test_the_store_answers_the_apis_refusals(db):
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    with pytest.raises(NotFound, match="no workload nope: submit the workload again"):
        store.check_workload_upload("nope")
    with pytest.raises(NotFound, match="workload nope is not this device's work"):
        store.report(device, "nope", outcome="DONE", now=T0)
    work = submit(store, device)
    with pytest.raises(Conflict, match=f"workload {work} is CREATED: it takes no results"):
        store.check_results_upload(work)
    assert store.cancel(work, T0 + 1)["status"] == "CANCELLED"
    with pytest.raises(Conflict, match="is already CANCELLED: there is nothing to cancel"):
        store.cancel(work, T0 + 2)
    with pytest.raises(Conflict, match="it takes no file any more"):
        store.check_workload_upload(work)
    assert not store.record_progress(device, work, 1, 2)


def test_the_line_is_the_order_work_became_ready_whatever_the_clock_said(db):
    """Regression: the order was ReadyAt, so a clock stepped back put later work first."""
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    first = submit(store, device, upload_at=T0 + 5_000)
    second = submit(store, device, upload_at=T0 + 1_000)  # the clock stepped back 4 s
    urgent = submit(store, device, priority="HIGH", upload_at=T0 + 2_000)
    seqs = [store.get(w)["ready_seq"] for w in (first, second, urgent)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    order = [store.claim(device, store.sequence_mark(), held)[0]["work_id"]
             for held in ((), {urgent}, {urgent, first})]
    assert order == [urgent, first, second]


def test_a_poll_is_never_handed_work_handed_out_after_it_arrived(db):
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    work = submit(store, device, upload_at=T0)
    asked_before = store.sequence_mark()   # a poll arrives ...
    handed, _ = store.claim(device, store.sequence_mark())  # ... another takes the work
    assert store.sequence_mark() == handed["handout_seq"] > asked_before
    assert store.claim(device, asked_before) == (None, [])
    # a poll that arrives later is a restarted device: it resumes its work
    again, _ = store.claim(device, store.sequence_mark())
    assert again["work_id"] == work and again["attempts"] == 2


def test_a_hand_out_ends_a_poison_pill_and_hands_out_the_next(db):
    store = WorkloadStore(db, ServiceLimits(max_attempts=1))
    device = add_device(db)
    pill = submit(store, device, upload_at=T0)
    store.claim(device, store.sequence_mark())
    following = submit(store, device, upload_at=T0 + 1)
    handed, ended = store.claim(device, store.sequence_mark())
    assert handed["work_id"] == following and ended == [pill]
    failed = store.get(pill)
    assert (failed["status"], failed["error_kind"]) == ("FAILED", "attempts_exhausted")


def test_a_change_is_a_compare_and_set_on_the_row_as_read(db):
    """Two writers that read the same row: the second's change does not apply."""
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    work = submit(store, device, upload_at=T0)
    read_by_both = store.get(work)
    with db.transaction() as conn:
        first = transitions.transition(work, read_by_both, transitions.CancelRequested(), T0)
        assert write(conn, work, read_by_both, first)["status"] == "CANCELLED"
    late = transitions.transition(work, read_by_both, transitions.HandedOut(3), T0)
    with pytest.raises(Conflict, match=f"workload {work} changed while it was being"):
        with db.transaction() as conn:
            write(conn, work, read_by_both, late)
    after = store.get(work)
    assert (after["status"], after["attempts"], after["handout_seq"]) == ("CANCELLED", 0, None)


def test_the_upload_sweep_applies_the_policy_rule_at_its_boundary(db):
    store = WorkloadStore(db, ServiceLimits(upload_ttl_seconds=10))
    device = add_device(db)
    on_time = submit(store, device, now=T0)
    late = submit(store, device, now=T0 - 1)
    uploaded = submit(store, device, now=T0 - 60_000, upload_at=T0 - 59_000)
    assert store.expire_uploads(T0 + 10_000) == [(late, device)]
    assert store.get(on_time)["status"] == "CREATED"
    assert store.get(uploaded)["status"] == "READY"
    ended = store.get(late)
    assert (ended["status"], ended["error_kind"], ended["finished_at"]) == (
        "FAILED", "upload_expired", T0 + 10_000)


def test_a_lease_sweep_puts_work_back_in_its_place_in_line(db):
    store = WorkloadStore(db, ServiceLimits(lease_seconds=60))
    silent = add_device(db, last_seen=T0)
    work = submit(store, silent, upload_at=T0)
    place = store.get(work)["ready_seq"]
    store.claim(silent, store.sequence_mark())
    later = submit(store, silent, upload_at=T0 + 1)
    assert store.expire_leases(T0 + 60_000) == []  # silent exactly the lease: kept
    assert store.expire_leases(T0 + 60_001) == [silent]
    back = store.get(work)
    assert (back["status"], back["ready_seq"]) == ("READY", place)
    handed, _ = store.claim(silent, store.sequence_mark())
    assert handed["work_id"] == work and store.get(later)["status"] == "READY"


def test_deleting_a_device_cancels_its_work_through_the_state_machine(db):
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    queued, done = submit(store, device, upload_at=T0), submit(store, device, upload_at=T0)
    store.claim(device, store.sequence_mark(), {queued})
    store.report(device, done, outcome="DONE", now=T0 + 1)
    store.results_uploaded(done, T0 + 2)
    _, cancelled = AdminStore(db).delete_device(device, T0 + 3, cancel_work=True)
    assert cancelled == [queued]
    row = store.get(queued)
    assert (row["status"], row["error_kind"]) == ("CANCELLED", "device_deleted")
    assert store.get(done)["status"] == "DONE"


def test_work_cancelled_with_its_device_is_answered_in_one_order_on_every_engine(db):
    """Work created in the same millisecond: oldest first, then by WorkId (not the order
    rows happen to come back in, which differs between the engines)."""
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    same_ms = [submit(store, device) for _ in range(6)]
    for work in sorted(same_ms, reverse=True):  # rows changed in another order
        store.workload_uploaded(work, T0 + 1)
    _, cancelled = AdminStore(db).delete_device(device, T0 + 2, cancel_work=True)
    assert cancelled == sorted(same_ms)


def test_the_run_estimate_is_the_mean_of_the_last_20_runs_whatever_ties_in_time(db):
    """Runs that finished in the same millisecond: the last 20 by WorkId, so both engines
    average the same runs."""
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    seconds = {}
    for n in range(24):
        work = submit(store, device, upload_at=T0)
        handed, _ = store.claim(device, store.sequence_mark(), set(seconds))  # uploading
        assert handed["work_id"] == work
        store.report(device, work, outcome="DONE", device_seconds=float(n + 1), now=T0 + 5)
        seconds[work] = float(n + 1)
    for work in sorted(seconds):  # all finish in the same millisecond, in WorkId order
        store.results_uploaded(work, T0 + 6)
    last = sorted(seconds, reverse=True)[:20]
    assert store.run_estimate_seconds(device) == pytest.approx(
        sum(seconds[w] for w in last) / 20)


def test_bulk_inserted_queued_work_takes_places_in_line_in_the_order_given(db):
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    store.bulk_insert({"work_id": w, "device_id": device, "account_id": "a",
                       "priority": "LOW", "status": status, "created_at": T0}
                      for w, status in zip(ids, ("READY", "DONE", "READY")))
    seqs = [store.get(w)["ready_seq"] for w in ids]
    assert seqs[1] is None and seqs[0] < seqs[2] == store.sequence_mark()


# -- the upgrade from schema version 5 -------------------------------------------------
def make_v5_database(path: Path) -> dict[str, str]:
    """A database at schema version 5 holding a device's queue: READY work (ReadyAt out of
    submit order), running work handed out at known microseconds, finished work."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for script in MIGRATIONS[:5]:
        for statement in statements(script):
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (5)")
    device = str(uuid.uuid4())
    conn.execute("INSERT INTO devices (device_id, name, client_id, secret_hash, created_at, "
                 "last_seen) VALUES (?, 'old', 'old', 'x', ?, ?)", (device, T0, T0))
    rows = {  # name: (status, ready_at, handed_out_at in microseconds)
        "ready_late": ("READY", T0 + 300, None),
        "ready_early": ("READY", T0 + 100, None),
        "ready_again": ("READY", T0 + 200, (T0 + 250) * 1000),  # its lease ended
        "executing": ("EXECUTING", T0 + 50, (T0 + 400) * 1000),
        "uploading": ("UPLOADING", T0 + 60, (T0 + 350) * 1000),
        "done": ("DONE", T0 + 10, (T0 + 20) * 1000),
    }
    ids = {"device": device}
    for name, (status, ready_at, handed) in rows.items():
        ids[name] = str(uuid.uuid4())
        conn.execute("INSERT INTO workloads (work_id, device_id, account_id, priority, "
                     "status, created_at, ready_at, handed_out_at, attempts, has_workload) "
                     "VALUES (?, ?, 'a', 'MEDIUM', ?, ?, ?, ?, ?, 1)",
                     (ids[name], device, status, T0, ready_at, handed,
                      0 if handed is None else 1))
    conn.close()
    return ids


def test_a_version_5_database_upgrades_in_place_and_keeps_its_order(tmp_path: Path):
    path = tmp_path / "queue.db"
    ids = make_v5_database(path)
    db = Database(path)
    try:
        with db.reading() as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == \
                SCHEMA_VERSION == 6
            rows = {r["work_id"]: dict(r) for r in conn.execute("SELECT * FROM workloads")}
        by_name = {name: rows[ids[name]] for name in ids if name != "device"}
        # the place in line follows the old ReadyAt order; finished work has none
        placed = sorted((r["ready_seq"], name) for name, r in by_name.items()
                        if r["ready_seq"] is not None)
        assert [name for _, name in placed] == [
            "executing", "uploading", "ready_early", "ready_again", "ready_late"]
        # hand-outs of running work keep their order, after every place in line
        assert by_name["uploading"]["handout_seq"] < by_name["executing"]["handout_seq"]
        assert by_name["uploading"]["handout_seq"] > placed[-1][0]
        assert by_name["ready_again"]["handout_seq"] is None
        assert by_name["done"]["handout_seq"] is None and by_name["done"]["ready_seq"] is None
        store = WorkloadStore(db, ServiceLimits())
        assert store.sequence_mark() == by_name["executing"]["handout_seq"]
        # a poll after the upgrade is a restarted device: its running work comes back
        handed, _ = store.claim(ids["device"], store.sequence_mark())
        assert handed["work_id"] == ids["uploading"]
        nxt, _ = store.claim(ids["device"], store.sequence_mark(), {ids["uploading"]})
        assert nxt["work_id"] == ids["executing"]
        ready = [store.claim(ids["device"], store.sequence_mark(),
                             {ids["uploading"], ids["executing"]})[0]["work_id"]]
        assert ready == [ids["ready_early"]]
        # new work joins the line after everything numbered before
        new = submit(store, ids["device"], upload_at=T0)
        assert store.get(new)["ready_seq"] == store.sequence_mark() > nxt["handout_seq"]
    finally:
        db.close()


# -- Alembic: the schema made and upgraded is the one declared ---------------------------
def schema_differences(db: Database) -> list:
    """What differs between the database's tables and ``queueservice.schema``."""
    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def legacy_only(difference: Any) -> bool:
    """What a database made by the old list may differ in, harmlessly: its kept
    ``schema_version`` table, a ``TEXT PRIMARY KEY`` without ``NOT NULL`` (SQLite's quirk;
    every id is given) and ``REAL`` spelled where the declared ``FLOAT`` is (one affinity)."""
    if isinstance(difference, list):
        difference = difference[0]
    kind = difference[0]
    if kind == "remove_table":
        return difference[1].name == "schema_version"
    if kind == "modify_nullable":
        return difference[3] in ("key_hash", "device_id", "token_hash", "user_id", "work_id")
    if kind == "modify_type":
        return type(difference[5]).__name__ == "REAL" and type(difference[6]).__name__ == "Float"
    return False


def alembic_revision(db: Database) -> str:
    with db.reading() as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_head_names_the_newest_migration(db):
    """``db.HEAD`` lets an up-to-date database start without Alembic: it must be the
    scripts' head, or a new migration would never run."""
    with db.engine.connect() as conn:
        scripts = ScriptDirectory.from_config(alembic_config(conn))
    assert scripts.get_current_head() == HEAD


def test_a_new_database_has_the_declared_schema_and_an_empty_queue_sequence(db):
    assert schema_differences(db) == []
    assert alembic_revision(db) == HEAD
    assert WorkloadStore(db, ServiceLimits()).sequence_mark() == 0


def test_a_version_6_database_upgrades_in_place_with_nothing_lost(tmp_path: Path):
    """The last hand-written schema is Alembic's baseline: the database is stamped, every
    row stays as it was, the schema is the declared one, and the queue goes on."""
    path = tmp_path / "queue.db"
    ids = make_v5_database(path)
    Database(path).close()  # through the old list to version 6 (and stamped)
    conn = sqlite3.connect(path, isolation_level=None)
    # (read before the later revisions' tables and columns go: they come back, empty)
    before = {r[0]: r for r in conn.execute("SELECT * FROM workloads ORDER BY work_id")}
    conn.execute("DROP TABLE alembic_version")  # as a version-6 store made before Alembic
    conn.execute("DROP TABLE service_settings")
    for table in ("ledger", "team_members", "teams", "prices", "bookings", "windows",
                  "sessions", "credit_requests", "portal_sessions",
                  "portal_uploads", "login_failures"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DROP INDEX workloads_team")
    conn.execute("DROP INDEX workloads_claim")
    conn.execute("DROP INDEX workloads_team_status")
    conn.execute("DROP INDEX workloads_finished")
    for column in ("team_id", "max_seconds", "timeslot", "on_slot_end", "session_id"):
        conn.execute(f"ALTER TABLE workloads DROP COLUMN {column}")
    mark = conn.execute("SELECT value FROM queue_sequence").fetchone()[0]
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 6
    conn.close()
    db = Database(path)
    try:
        assert alembic_revision(db) == HEAD
        assert [d for d in schema_differences(db) if not legacy_only(d)] == []
        with db.reading() as conn:
            after = {r[0]: tuple(r) for r in conn.execute(
                "SELECT * FROM workloads ORDER BY work_id")}
        assert after == before
        store = WorkloadStore(db, ServiceLimits())
        assert store.sequence_mark() == mark
        handed, _ = store.claim(ids["device"], store.sequence_mark(),
                                holding=[ids["executing"], ids["uploading"]])
        assert handed["work_id"] == ids["ready_early"] and handed["handout_seq"] == mark + 1
    finally:
        db.close()


def test_a_database_from_a_newer_qick_queue_is_refused_with_what_to_do(tmp_path: Path):
    path = tmp_path / "queue.db"
    Database(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    conn.close()
    with pytest.raises(ConfigError, match="upgrade qick-queue"):
        Database(path)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_ledger_of_schema_0003_gets_its_running_balances_on_upgrade(engine, tmp_path: Path,
                                                                      request):
    """Migration 0004 keeps each ledger line's running sum with it: the lines already
    there get theirs, per team, in order, and a new line continues from them."""
    url = (f"sqlite:///{tmp_path / 'queue.db'}" if engine == "sqlite"
           else request.getfixturevalue("postgres_url"))
    made = create_engine(url)
    with made.begin() as conn:
        command.upgrade(alembic_config(conn), "0003_teams")
        for team in ("t1", "t2"):
            conn.exec_driver_sql("INSERT INTO teams (team_id, name, created_by, created_at) "
                                 f"VALUES ('{team}', '{team}', 'admin', 0)")
        for team, seconds in (("t1", 100.0), ("t2", 5.0), ("t1", -30.0), ("t1", 2.5)):
            conn.exec_driver_sql("INSERT INTO ledger (team_id, kind, seconds, user_id, at) "
                                 f"VALUES ('{team}', 'grant', {seconds}, 'admin', 0)")
    made.dispose()
    db = Database(tmp_path / "queue.db" if engine == "sqlite" else url)
    try:
        with db.reading() as conn:
            rows = [(r[0], r[1]) for r in conn.execute(
                "SELECT team_id, balance_after FROM ledger ORDER BY entry_id")]
        assert rows == [("t1", 100.0), ("t2", 5.0), ("t1", 70.0), ("t1", 72.5)]
        with db.transaction() as conn:
            line = facility.append_line(conn, "t1", "charge", -2.5, "u", None, 1)
            assert line["balance_after"] == 70.0 and facility.balance(conn, "t2") == 5.0
    finally:
        db.close()


def test_a_sqlite_store_writes_ahead_and_keeps_a_64_mb_page_cache(tmp_path: Path):
    """WAL (readers beside the writer), foreign keys on, and a page cache large enough for
    a long queue or a month of a team's ledger (SQLite's default is 2 MB)."""
    db = Database(tmp_path / "queue.db")
    try:
        with db.reading() as conn:
            settings = {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                        for name in ("journal_mode", "foreign_keys", "cache_size")}
    finally:
        db.close()
    assert settings == {"journal_mode": "wal", "foreign_keys": 1, "cache_size": -65536}
