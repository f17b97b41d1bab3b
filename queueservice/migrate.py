"""``qick-queue migrate``: move a SQLite store (a data folder's ``queue.db`` and its
``files/``) into PostgreSQL, and its files into S3, keeping every user, API key, device,
workload, idempotency key and place in line.

What it does, in order; any refusal or failure leaves the target database as it was:

1. Refuses a source that another process on this machine has open (a running
   ``qick-queue serve``: see ``in_use``); the service must be stopped first.
2. Opens both databases as the service does (``Database``: Alembic), so an old SQLite
   store is upgraded in place first and the target gets the schema of this qick-queue.
3. In ONE target transaction: refuses a target that holds any row (another store, or one
   made by ``qick-queue init``); copies every table of ``schema.metadata`` in foreign-key
   order, ``BATCH_ROWS`` at a time (memory stays bounded whatever the store's size), the
   queue sequence's value included; then copies the files (below); only then commits, so
   a committed target never names a file the target store lacks.
4. Files (with ``files``, an ``s3://`` URL): first checks that every file the rows say is
   there is in the data folder; then uploads every file of the folder, streamed, each
   checked against the SHA-256 its workload recorded (when it has one) before it leaves,
   and once in S3 by its size and the SHA-256 stored with it (the transfer itself is
   checksummed by the AWS library). Without ``files`` they stay in the data folder, where the migrated
   service (``serve --data DIR --database URL``) reads them.

The source is read in one transaction that holds its write lock (a consistent snapshot)
and nothing is written to it (but the upgrade of an old store, which its own service
would make at its next start too), so a rollback is simply to keep serving it. The
library logs its progress (``qick_queue``) and prints nothing.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Table, literal, or_, select
from sqlalchemy.exc import SQLAlchemyError

from cloudqueue.errors import NotFound
from queueservice.datadir import DataDir
from queueservice.db import Database, driver_reason, make_engine
from queueservice.errors import DatabaseUnavailable, MigrationError, StorageUnavailable
from queueservice.files import KINDS, LocalFiles, S3Files, open_files, parse_key
from queueservice.schema import devices, metadata, queue_sequence, workloads

log = logging.getLogger("qick_queue")

#: rows read from the source and inserted into the target at a time
BATCH_ROWS = 1000
#: files copied between two progress lines in the log
LOG_EVERY_FILES = 1000
#: the byte of a WAL database's ``-shm`` file that every SQLite connection to it holds a
#: shared lock on while it is open (the "DMS" lock: sqlite.org/walformat.html)
SHM_DMS_BYTE = 128


@dataclass
class MigrationResult:
    """What was moved: rows per table (foreign-key order), files and their bytes."""

    source: Path                   # the data folder
    database: str                  # the target, its password hidden
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    files_url: str | None = None   # None: the files stay in the data folder


def migrate(data: Path, database: str, files: str | None = None) -> MigrationResult:
    """Move the SQLite store of the data folder ``data`` into the empty PostgreSQL
    database ``database``, and its files into ``files`` (``s3://bucket/prefix``; None:
    they stay in the data folder). MigrationError when refused or failed (QueueError for
    a URL that is no database's or bucket's); the target database then holds nothing of
    it."""
    source = DataDir(Path(data))
    if not source.db_path.is_file():
        raise MigrationError(f"{source.root} holds no queue.db: give the data folder of a "
                             "qick-queue store kept in SQLite (the one `serve --data` used)")
    try:
        served = in_use(source.db_path)
    except OSError as exc:
        raise MigrationError(f"cannot open {source.db_path}-shm ({exc.strerror}): run "
                             "migrate as the user that runs the service") from None
    if served:
        raise MigrationError(f"{source.db_path} is open in another process (a running "
                             f"`qick-queue serve --data {source.root}`?): stop the service "
                             "first, then migrate")
    target = make_engine(database)
    target.dispose()
    # as given (a runnable --database), unless it holds a password
    described = database if target.url.password is None else target.url.set(
        drivername="postgresql").render_as_string(hide_password=True)
    if target.dialect.name != "postgresql":
        raise MigrationError(f"--to-database {database!r} is not a PostgreSQL URL: give "
                             "postgresql://user@host/dbname (an empty database)")
    result = MigrationResult(source.root, described, files_url=files)
    store = _s3_store(files) if files else None
    _prepare(source.db_path, str(source.db_path))
    _prepare(database, described)
    reader, writer = make_engine(source.db_path), make_engine(database)
    try:
        with reader.connect() as src, src.begin(), writer.connect() as dst, dst.begin():
            _check_empty(dst, described)
            if store is not None:
                _check_files_present(src, LocalFiles(source.files_path))
            for table in metadata.sorted_tables:
                result.rows[table.name] = _copy_table(src, dst, table)
                log.info("migrate: %s: %d copied", table.name, result.rows[table.name])
            if store is not None:
                _copy_files(src, LocalFiles(source.files_path), store, result)
            log.info("migrate: committing the target database")
    except SQLAlchemyError as exc:
        raise MigrationError(f"the migration into {described} failed, nothing was committed "
                             f"there: {driver_reason(exc)}") from None
    finally:
        reader.dispose()
        writer.dispose()
    return result


def in_use(db_path: Path) -> bool:
    """Whether another process on this machine has the SQLite database open: every
    connection to a WAL database (the service's) holds a shared lock on one byte of its
    ``-shm`` file while open, so a write lock on it is refused. The lock taken here to ask
    is released at once. Call it before this process opens the database: POSIX locks are
    the process's, and releasing this one would release a connection's own."""
    try:
        fd = os.open(f"{db_path}-shm", os.O_RDWR)
    except FileNotFoundError:  # no connection open (the last one to close removes it)
        return False
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_BYTE)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return True
            raise
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_BYTE)
        return False
    finally:
        os.close(fd)


def _s3_store(files: str) -> S3Files:
    """The target file store, its bucket checked (QueueError naming what is wrong). Its
    staging folder is a temporary one: nothing is staged, and the data folder's own
    ``files/tmp`` is left alone."""
    if not files.startswith("s3://"):
        raise MigrationError(f"--to-files {files!r} is not s3://BUCKET[/PREFIX]: give an S3 "
                             "URL, or leave --to-files out to keep the files in the data "
                             "folder")
    with tempfile.TemporaryDirectory(prefix="qick-migrate-") as tmp:
        store = open_files(files, Path(tmp))
        assert isinstance(store, S3Files)
        store.create()
    return store


def _prepare(target: Path | str, described: str) -> None:
    """Open the database as the service does, which brings it to this qick-queue's schema
    (Alembic), and close it."""
    try:
        Database(target).close()
    except DatabaseUnavailable as exc:
        raise MigrationError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise MigrationError(f"cannot open the database {described}: {driver_reason(exc)}: check "
                             "the URL, and that the server runs and lets this user in") from None


def _check_empty(dst: Connection, described: str) -> None:
    """Refuse a target that holds any row (the schema's one counter row aside)."""
    held = [table.name for table in metadata.sorted_tables if table is not queue_sequence
            and dst.execute(select(literal(1)).select_from(table).limit(1)).first()]
    if held:
        raise MigrationError(f"the database {described} already holds a qick-queue store "
                             f"(rows in {', '.join(held)}): migrate into a new, empty "
                             "database (createdb), without `qick-queue init` on it")


def _copy_table(src: Connection, dst: Connection, table: Table) -> int:
    """Copy ``table``'s rows ``BATCH_ROWS`` at a time; the queue sequence's counter row
    replaces the target's own."""
    if table is queue_sequence:
        dst.execute(table.delete())
    rows = src.execute(select(table), execution_options={"yield_per": BATCH_ROWS})
    count = 0
    for batch in rows.partitions():
        dst.execute(table.insert(), [row._asdict() for row in batch])
        count += len(batch)
    return count


def _named_files(src: Connection) -> Iterator[str]:
    """Every file the rows say is stored: workload and results files, configurations."""
    w, d = workloads.c, devices.c
    flagged = src.execute(select(w.work_id, w.has_workload, w.has_result)
                          .where(or_(w.has_workload != 0, w.has_result != 0)),
                          execution_options={"yield_per": BATCH_ROWS})
    for row in flagged:
        if row.has_workload:
            yield f"workloads/{row.work_id}"
        if row.has_result:
            yield f"results/{row.work_id}"
    configured = src.execute(select(d.device_id).where(d.config_refreshed.is_not(None)),
                             execution_options={"yield_per": BATCH_ROWS})
    for row in configured:
        yield f"configs/{row.device_id}"


def _check_files_present(src: Connection, local: LocalFiles) -> None:
    """Refuse before anything is copied when a file the rows name is not in the folder."""
    for key in _named_files(src):
        if not local.path(key).is_file():
            raise MigrationError(f"{local.path(key)} is missing, yet the store says it was "
                                 "uploaded: restore it (or the whole data folder) from a "
                                 "backup, then migrate again")


def _recorded_sha256(src: Connection, key: str) -> str | None:
    """The SHA-256 the workload recorded for this file of its, when it has one."""
    kind, ident = parse_key(key)
    w = workloads.c
    if kind == "configs":
        return None
    present, recorded = (w.has_workload, w.workload_sha256) if kind == "workloads" else (
        w.has_result, w.result_sha256)
    row = src.execute(select(present, recorded).where(w.work_id == ident)).first()
    return row[1] if row is not None and row[0] else None


def _local_keys(local: LocalFiles) -> Iterator[str]:
    """The key of every file in the store's folders (anything else there is left)."""
    for kind in KINDS:
        folder = local.root / kind
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                key = f"{kind}/{entry.name}"
                try:
                    parse_key(key)
                except NotFound:
                    log.warning("migrate: %s is not a file of the store: not copied",
                                entry.path)
                    continue
                if entry.is_file():
                    yield key


def _copy_files(src: Connection, local: LocalFiles, store: S3Files,
                result: MigrationResult) -> None:
    for key in _local_keys(local):
        result.bytes += _copy_file(local, store, key, _recorded_sha256(src, key))
        result.files += 1
        if result.files % LOG_EVERY_FILES == 0:
            log.info("migrate: %d files (%d bytes) copied", result.files, result.bytes)
    log.info("migrate: %d files (%d bytes) copied to %s", result.files, result.bytes,
             store.url)


def _copy_file(local: LocalFiles, store: S3Files, key: str, recorded: str | None) -> int:
    """Upload one file, streamed; answers its size. Checked before it leaves against the
    SHA-256 its workload recorded, and once in S3 by size and SHA-256."""
    path = local.path(key)
    try:
        size, sha256 = local.size(key), local.sha256(key)
    except OSError as exc:
        raise MigrationError(f"cannot read {path} ({exc.strerror}): run migrate as the user "
                             "that runs the service") from None
    if size is None or sha256 is None:
        raise MigrationError(f"{path} vanished while it was being copied: stop the service "
                             "that uses the data folder, then migrate again")
    if recorded is not None and sha256 != recorded:
        raise MigrationError(f"{path} is damaged: its SHA-256 is {sha256}, not the "
                             f"{recorded} recorded when it was uploaded; restore it from a "
                             "backup, then migrate again")
    try:
        store.upload(path, key, sha256)
        stored_size, stored_sha256 = store.size(key), store.sha256(key)
    except StorageUnavailable as exc:
        raise MigrationError(f"copying {key} to {store.url} failed: {exc}") from None
    if (stored_size, stored_sha256) != (size, sha256):
        raise MigrationError(f"{key} arrived in {store.url} as {stored_size} bytes with "
                             f"SHA-256 {stored_sha256}, not {size} bytes with {sha256}: "
                             "check the S3 store, then migrate again")
    return size
