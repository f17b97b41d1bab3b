"""``qick-queue migrate``: a SQLite store made by the real service (users, API keys, a
device with its configuration, finished, running and waiting work, an idempotency key) is
moved by the real CLI, in a subprocess, into a real PostgreSQL database (tests/pgserver.py)
and S3 (moto's server mode); then ``serve --database ... --files ...`` on it answers as the
SQLite store did: the same people log in with the same keys, see the same lists, download
the same files, the device is handed the waiting work in the same order, a retried
Idempotency-Key answers the first workload. The source is left as it was. Refusals and
failures (a served source, a target that holds a store, a bad URL, a missing or damaged
file) leave the target database empty."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tracemalloc
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import requests

from queueservice import migrate as migration
from queueservice.datadir import init_data_dir
from queueservice.db import Database
from queueservice.files import KINDS
from queueservice.schema import metadata
from queueservice.settings import ServiceLimits
from queueservice.workloads import WorkloadStore
from tests.conftest import QueueService, start_queue_service
from tests.pgserver import PostgresServer
from tests.server.api import Api, Device, World, device_token, put_file, sha, status, submit
from tests.server.conftest import MotoS3
from tests.server.test_store import make_v5_database

BIG = 9 * 2**20  # past S3_PART_BYTES: copied to S3 in parts
MANY = 100_000   # workloads of a store that must not be held in memory at once
IDEMPOTENT = {"Priority": "LOW", "WorkloadName": "kept"}


@dataclass
class Store:
    """A stopped SQLite store made by the real service, and what it answered then."""

    data: Path
    alice_key: str
    bob_key: str
    device: Device
    done: str        # DONE, with results
    running: str     # EXECUTING (handed out before the migration)
    waiting: list    # READY, in the order the device is to be handed them
    created: str     # CREATED through an Idempotency-Key
    files: dict      # key -> bytes: every file of the store
    lists: dict      # who -> GET /workloads items
    users: list      # GET /users (admin)


def finish(device: Device, work_id: str, results: bytes = b"results") -> None:
    """Report the device's work done and upload its results."""
    report = device.report(work_id)
    assert report.status_code == 200, report.text
    assert put_file(report.json()["UploadUrl"], results).status_code == 200


def workload_lists(service: QueueService, keys: dict) -> dict:
    return {who: Api(service.url, key).get("/workloads", params={"Limit": 100}).json()["Items"]
            for who, key in keys.items()}


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    service = start_queue_service(tmp_path_factory.mktemp("sqlite-store") / "data")
    try:
        world = World(service)
        alice, _ = world.user()
        bob, _ = world.user()
        device = world.device()
        config = b'{"soccfg": "board one"}'
        assert put_file(device.heartbeat().json()["UploadUrl"], config).status_code == 200
        done = submit(alice, device.id, b"done-work", ContentSHA256=sha(b"done-work"))
        assert device.next_work().json()["WorkId"] == done
        finish(device, done, b"hdf5-results")
        running = submit(bob, device.id, b"running-work")
        assert device.next_work().json()["WorkId"] == running
        medium1 = submit(alice, device.id, b"medium-1", priority="MEDIUM")
        high = submit(bob, device.id, b"high", priority="HIGH")
        medium2 = submit(alice, device.id, b"m" * BIG, priority="MEDIUM")
        kept = alice.post("/workloads", json={"DeviceId": device.id, **IDEMPOTENT},
                          headers={"Idempotency-Key": "k-1"})
        assert kept.status_code == 201
        keys = {"alice": alice.token, "bob": bob.token, "admin": service.admin_key}
        store = Store(
            service.data_dir, alice.token, bob.token, device, done, running,
            [high, medium1, medium2], kept.json()["WorkId"],
            {f"workloads/{done}": b"done-work", f"results/{done}": b"hdf5-results",
             f"workloads/{running}": b"running-work", f"workloads/{medium1}": b"medium-1",
             f"workloads/{high}": b"high", f"workloads/{medium2}": b"m" * BIG,
             f"configs/{device.id}": config},
            workload_lists(service, keys), world.admin.get("/users").json())
    finally:
        service.stop()
    return store


@pytest.fixture
def data(sqlite_store: Store, tmp_path: Path) -> Path:
    """This test's own copy of the store's data folder."""
    return Path(shutil.copytree(sqlite_store.data, tmp_path / "data"))


def migrate(data: Path, database: str, files: str | None = None, s3: MotoS3 | None = None,
            *options: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "queueservice.cli", "migrate", "--data", str(data),
            "--to-database", database, *options]
    if files:
        args += ["--to-files", files]
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(s3.env if s3 else {})})


def snapshot(data: Path) -> tuple[list[str], dict[str, str]]:
    """The SQLite store's content (its SQL dump) and its files' hashes."""
    conn = sqlite3.connect(data / "queue.db")
    try:
        dump = list(conn.iterdump())
    finally:
        conn.close()
    files = {str(p.relative_to(data)): sha(p.read_bytes())
             for kind in KINDS for p in (data / "files" / kind).iterdir()}
    return dump, files


def source_counts(data: Path) -> dict[str, int]:
    conn = sqlite3.connect(data / "queue.db")
    try:
        return {t.name: conn.execute(f"SELECT COUNT(*) FROM {t.name}").fetchone()[0]
                for t in metadata.sorted_tables}
    finally:
        conn.close()


def target_rows(database: str) -> dict[str, int]:
    """Rows per table of the target (no tables at all: an empty dict)."""
    with psycopg.connect(database) as conn:
        names = [t.name for t in metadata.sorted_tables]
        present = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        return {n: conn.execute(f"SELECT COUNT(*) FROM {n}").fetchone()[0]
                for n in names if n in present}


def assert_holds_no_store(database: str) -> None:
    """Nothing of the source in the target: no users, devices, workloads, keys."""
    rows = target_rows(database)
    assert all(count == 0 for name, count in rows.items() if name != "queue_sequence"), rows


def refusal(done: subprocess.CompletedProcess) -> str:
    """A refusal: exit code 1 and one line saying why (the log's lines before it aside)."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("qick-queue: "), done.stderr
    assert "Traceback" not in done.stderr
    return last


@pytest.fixture
def migrated(data: Path, postgres_url: str, s3: MotoS3, sqlite_store: Store
             ) -> Iterator[tuple[QueueService, str, dict]]:
    """The store migrated into PostgreSQL and S3 and served from there: (service, bucket,
    the migration's JSON summary)."""
    before = snapshot(data)
    bucket = s3.new_bucket()
    done = migrate(data, postgres_url, f"s3://{bucket}/queue", s3, "--json")
    assert done.returncode == 0, done.stderr
    assert snapshot(data) == before  # the source is left as it was
    service = QueueService(data, database=postgres_url, files=f"s3://{bucket}/queue",
                           env=s3.env).start()
    yield service, bucket, json.loads(done.stdout)
    service.stop()


def test_migrate_copies_every_row_and_file_and_says_what_to_run(migrated, sqlite_store: Store,
                                                                postgres_url: str, s3: MotoS3):
    service, bucket, summary = migrated
    assert summary["Rows"] == source_counts(sqlite_store.data)
    assert summary["Rows"]["workloads"] == 6 and summary["Rows"]["idempotency"] == 1
    assert target_rows(postgres_url) == summary["Rows"]
    assert s3.keys(bucket) == sorted(f"queue/{key}" for key in sqlite_store.files)
    assert summary["Files"] == len(sqlite_store.files)
    assert summary["Bytes"] == sum(len(b) for b in sqlite_store.files.values())
    assert summary["FilesTo"] == f"s3://{bucket}/queue"
    assert shlex.split(summary["Serve"]) == [
        "qick-queue", "serve", "--data", str(service.data_dir), "--database", postgres_url,
        "--files", f"s3://{bucket}/queue"]


def test_the_migrated_store_answers_as_the_sqlite_one_did(migrated, sqlite_store: Store):
    service, _, _ = migrated
    keys = {"alice": sqlite_store.alice_key, "bob": sqlite_store.bob_key,
            "admin": service.admin_key}
    assert workload_lists(service, keys) == sqlite_store.lists
    admin = Api(service.url, service.admin_key)
    assert admin.get("/users").json() == sqlite_store.users
    alice = Api(service.url, sqlite_store.alice_key)
    for key, content in sqlite_store.files.items():
        kind, ident = key.split("/")
        if kind == "configs":
            url = admin.get(f"/devices/{ident}").json()["DeviceConfigurationUrl"]
        else:
            body = admin.get(f"/workloads/{ident}").json()
            url = body["WorkloadResultUrl" if kind == "results" else "WorkloadUrl"]
        assert requests.get(url, timeout=60).content == content, key
    assert status(alice, sqlite_store.done)["WorkStatus"] == "DONE"

    retried = alice.post("/workloads", json={"DeviceId": sqlite_store.device.id, **IDEMPOTENT},
                         headers={"Idempotency-Key": "k-1"})
    assert retried.status_code == 201 and retried.json()["WorkId"] == sqlite_store.created


def test_the_device_is_handed_the_work_in_the_same_order(migrated, sqlite_store: Store):
    service, _, _ = migrated
    old = sqlite_store.device
    # the same credentials log in; its token from before is still good (same secret)
    assert Api(service.url, old.api.token).get(f"/devices/{old.id}").status_code == 200
    device = Device(old.id, old.client_id, old.secret,
                    Api(service.url, device_token(service.root, old.client_id, old.secret)))
    alice = Api(service.url, sqlite_store.alice_key)
    # new work takes its place after the migrated work (the queue sequence went along)
    later = submit(alice, device.id, b"after-the-migration", priority="MEDIUM")
    order = []
    for _ in range(5):
        work_id = device.next_work().json()["WorkId"]
        order.append(work_id)
        finish(device, work_id)
    assert order == [sqlite_store.running, *sqlite_store.waiting, later]
    assert device.next_work().json() == []


def test_without_to_files_the_files_stay_in_the_data_folder(data: Path, postgres_url: str,
                                                            sqlite_store: Store):
    done = migrate(data, postgres_url)
    assert done.returncode == 0, done.stderr
    assert f"files: not copied; they stay in {data}/files" in done.stdout
    serve = done.stdout.strip().splitlines()[-1]
    assert serve.startswith("serve the migrated store with: ")
    command = shlex.split(serve.split(": ", 1)[1])
    assert command == ["qick-queue", "serve", "--data", str(data), "--database", postgres_url]
    service = QueueService(data, database=postgres_url).start()
    try:
        alice = Api(service.url, sqlite_store.alice_key)
        results = status(alice, sqlite_store.done)["WorkloadResultUrl"]
        assert requests.get(results, timeout=30).content == b"hdf5-results"
    finally:
        service.stop()


def test_migrate_refuses_a_database_that_already_holds_a_store(data: Path, tmp_path: Path,
                                                               postgres_url: str, s3: MotoS3):
    init_data_dir(tmp_path / "other", port=0, admin_email="first@lab.test",
                  database=postgres_url)
    before = target_rows(postgres_url)
    bucket = s3.new_bucket()
    line = refusal(migrate(data, postgres_url, f"s3://{bucket}/queue", s3))
    assert "already holds a qick-queue store (rows in users, api_keys)" in line
    assert "new, empty database" in line
    assert target_rows(postgres_url) == before and before["users"] == 1
    assert s3.keys(bucket) == []


@pytest.mark.parametrize("url, says", [
    ("mysql://root@localhost/queue", "only PostgreSQL (postgresql://...)"),
    ("queue.db", "is not a PostgreSQL URL"),
])
def test_migrate_refuses_a_bad_database_url(data: Path, url: str, says: str):
    done = migrate(data, url)
    assert says in refusal(done)
    assert done.stderr.count("\n") == 1  # one line
    assert not (Path.cwd() / "queue.db").exists()


def test_migrate_refuses_a_database_it_cannot_open(data: Path,
                                                   postgres_server: PostgresServer):
    done = migrate(data, postgres_server.url("no_such_db"))
    line = refusal(done)
    assert 'database "no_such_db" does not exist' in line and "check the URL" in line
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("files, says", [
    ("s3://no-such-bucket/queue", "the S3 bucket 'no-such-bucket' (--files "
                                  "s3://no-such-bucket/queue) does not exist"),
    ("/srv/queue-files", "--to-files '/srv/queue-files' is not s3://BUCKET[/PREFIX]"),
])
def test_migrate_refuses_a_file_store_it_cannot_use(data: Path, postgres_url: str,
                                                    s3: MotoS3, files: str, says: str):
    assert says in refusal(migrate(data, postgres_url, files, s3))
    assert target_rows(postgres_url) == {}  # refused before the database was touched


def test_migrate_refuses_a_store_missing_a_file_and_writes_nothing(
        data: Path, postgres_url: str, s3: MotoS3, sqlite_store: Store):
    missing = data / "files" / "results" / sqlite_store.done
    missing.unlink()
    bucket = s3.new_bucket()
    line = refusal(migrate(data, postgres_url, f"s3://{bucket}/queue", s3))
    assert f"{missing} is missing" in line and "restore it" in line
    assert_holds_no_store(postgres_url)
    assert s3.keys(bucket) == []


def test_a_damaged_file_aborts_the_copy_and_leaves_the_target_empty(
        data: Path, postgres_url: str, s3: MotoS3, sqlite_store: Store):
    # the file its workload recorded the SHA-256 of, changed to other bytes of its size
    (data / "files" / "workloads" / sqlite_store.done).write_bytes(b"DONE-WORK")
    line = refusal(migrate(data, postgres_url, f"s3://{s3.new_bucket()}/queue", s3))
    assert f"workloads/{sqlite_store.done} is damaged" in line
    assert sha(b"done-work") in line
    assert_holds_no_store(postgres_url)  # the rows copied before it were rolled back


def test_migrate_refuses_a_store_being_served(data: Path, postgres_url: str):
    service = QueueService(data).start()
    try:
        line = refusal(migrate(data, postgres_url))
        assert "open in another process" in line and "stop the service first" in line
    finally:
        service.stop()
    assert target_rows(postgres_url) == {}  # not even the schema was made
    done = migrate(data, postgres_url)  # once stopped, it goes
    assert done.returncode == 0, done.stderr


def test_a_store_whose_service_was_killed_migrates_with_its_last_work(
        data: Path, postgres_url: str, sqlite_store: Store):
    service = QueueService(data).start()
    alice = Api(service.url, sqlite_store.alice_key)
    last = submit(alice, sqlite_store.device.id, b"the-last-work")
    service.kill()  # its last commits are in queue.db-wal only
    done = migrate(data, postgres_url)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT status FROM workloads WHERE work_id = %s",
                            (last,)).fetchone() == ("READY",)


def test_an_old_sqlite_store_is_upgraded_then_migrated(tmp_path: Path, postgres_url: str):
    ids = make_v5_database(tmp_path / "queue.db")  # made before Alembic (version 5)
    result = migration.migrate(tmp_path, postgres_url)
    assert result.rows["workloads"] == 6 and result.rows["queue_sequence"] == 1
    with psycopg.connect(postgres_url) as conn:
        seq = dict(conn.execute("SELECT work_id, ready_seq FROM workloads").fetchall())
        value = conn.execute("SELECT value FROM queue_sequence").fetchone()[0]
        executing = conn.execute("SELECT handout_seq FROM workloads WHERE work_id = %s",
                                 (ids["executing"],)).fetchone()[0]
    # the places in line the upgrade gave, and the counter after them
    assert seq[ids["ready_early"]] < seq[ids["ready_again"]] < seq[ids["ready_late"]]
    assert seq[ids["done"]] is None and value == executing


def test_migrate_refuses_a_folder_without_a_sqlite_store(tmp_path: Path, postgres_url: str):
    line = refusal(migrate(tmp_path, postgres_url))
    assert f"{tmp_path} holds no queue.db" in line
    assert not (tmp_path / "queue.db").exists()


def test_a_large_store_is_copied_in_batches_with_bounded_memory(tmp_path: Path,
                                                                postgres_url: str):
    """100,000 workloads of about 1 kB each (100 MB as Python rows) go across while the
    migration's own allocations stay under 30 MB (tracemalloc: Python's heap)."""
    data = tmp_path / "data"
    data.mkdir()
    db = Database(data / "queue.db")
    note = "x" * 1000
    WorkloadStore(db, ServiceLimits()).bulk_insert(
        {"work_id": str(uuid.uuid4()), "device_id": "d", "account_id": "a",
         "priority": "MEDIUM", "status": "FAILED", "created_at": i, "error_message": note}
        for i in range(MANY))
    db.close()
    tracemalloc.start()
    try:
        result = migration.migrate(data, postgres_url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.rows["workloads"] == MANY == target_rows(postgres_url)["workloads"]
    assert result.files == 0 and result.files_url is None
    assert peak < 30 * 2**20, f"{peak / 2**20:.0f} MB"
