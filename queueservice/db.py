"""The database: SQLite (the embedded default: a file, WAL) or PostgreSQL; the tables
declared once (``schema``, SQLAlchemy) and migrated by Alembic (``queueservice/migrations``,
configured here: no alembic.ini).

The store's queries are SQL both engines run alike, with ``?`` marks, executed on the
driver's own cursor (``Connection.execute``). SQLAlchemy declares the tables, runs the
migrations, parses the URL and keeps PostgreSQL's connection pool; its statement and
result layer is not on the request path because, measured on the embedded default, it
made a status request 3-10 times slower (bench/bench_queue.py, docs in the README). Where
the engines differ, the caller asks ``Connection.dialect``.

On SQLite (one service process per file) every use is under ``lock``, which guards the one
connection; a write is ``BEGIN IMMEDIATE`` (the file's write lock at once); reads run
outside a transaction, each statement its own snapshot, as they always have.

On PostgreSQL any number of replicas share the database (``shared``), and ``lock`` is
none: each transaction takes a pooled connection, and the guarantees hold across processes
through the database itself: the compare-and-set of ``workloads.write``, the row locks of
the claim, the queue sequence's row lock. ``exclusive`` gives a job to one replica at a
time (an advisory lock); ``Connection.notify`` tells the other replicas a device's queue
changed (``NOTIFY``, delivered when the transaction commits; ``replicas.ChangeListener``).
A connection that fails or a pool that stays empty is ``DatabaseUnavailable`` (503, the
transaction rolled back); the first failure empties the pool, so the service recovers by
itself when the database is back (the pool does not test each connection before lending
it: that was a round trip more on every request). Reads run without a transaction (each
statement its own snapshot, as on SQLite).

Pool and timeouts per replica (PostgreSQL): ``POOL_SIZE`` connections kept, up to
``POOL_OVERFLOW`` more under load, a request waits ``POOL_TIMEOUT_SECONDS`` for one, a
connection is replaced after ``POOL_RECYCLE_SECONDS`` (TCP keepalives notice a silent host);
connecting gives up after ``CONNECT_TIMEOUT_SECONDS``, a statement after
``STATEMENT_TIMEOUT_MS``, a row lock wait after ``LOCK_TIMEOUT_MS``. Size PostgreSQL's
``max_connections`` for replicas x (POOL_SIZE + POOL_OVERFLOW + 2) (the 2: the change
listener and the mock fleet's leadership).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Protocol, Sequence

from sqlalchemy import Engine, create_engine, event, inspect, make_url
from sqlalchemy import Connection as SAConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.pool import StaticPool

from cloudqueue.errors import ConfigError
from queueservice import legacy
from queueservice.errors import DatabaseUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: the Alembic revision equal to the last hand-written schema (``legacy.SCHEMA_VERSION``)
BASELINE = "0001_baseline"
#: the newest revision in ``migrations/versions`` (a test checks): a database already
#: there starts the service without loading Alembic (a fifth of a second)
HEAD = "0009_ledger_team_at"
#: the channel replicas announce queue changes on (``Connection.notify``)
CHANGES_CHANNEL = "qick_queue_changes"

POOL_SIZE = 10
POOL_OVERFLOW = 10
POOL_TIMEOUT_SECONDS = 5
POOL_RECYCLE_SECONDS = 1800
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_MS = 10_000


class Record(dict):
    """A PostgreSQL row as SQLite's ``sqlite3.Row`` answers: by column name
    (``row["status"]``, ``dict(row)``) or by position (``row[0]``)."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


class Rows(Protocol):
    """What ``Connection.execute`` answers (a DB-API cursor)."""
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection:
    """The connection of one transaction (or of a read): ``execute`` runs SQL with ``?``
    marks and its parameters in order; ``dialect`` is ``"sqlite"`` or ``"postgresql"``.
    ``origin``: this process's id in the change notices it sends."""

    def __init__(self, driver: Any, dialect: str, origin: str = ""):
        self.driver = driver
        self.dialect = dialect
        self.origin = origin

    def hold(self, name: str) -> None:
        """Wait for, and hold until the transaction ends, the lock called ``name``: on
        PostgreSQL an advisory lock, across replicas; on SQLite the write transaction
        already holds the whole file."""
        if self.dialect == "postgresql":
            self.execute("SELECT 1 FROM pg_advisory_xact_lock(?)", (lock_key(name),))

    def notify(self, device_id: str) -> None:
        """Tell the other replicas this device's queue changed, when the transaction
        commits (PostgreSQL ``NOTIFY``; SQLite has no other replica: nothing to do)."""
        if self.dialect == "postgresql":
            self.execute(f"SELECT pg_notify('{CHANGES_CHANNEL}', ?)",
                         (f"{self.origin}:{device_id}",))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        if self.dialect == "sqlite":
            return self.driver.execute(sql, params)
        cursor = self.driver.cursor(row_factory=_record_rows)
        cursor.execute(_format_marks(sql),
                       [int(v) if isinstance(v, bool) else v for v in params])
        return cursor

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Every row of a query as a plain dict: for long reads (a device's queue), where
        ``dict(row)`` of each ``sqlite3.Row`` costs twice what pairing the names does."""
        cursor = self.execute(sql, params)
        rows = cursor.fetchall()
        if self.dialect != "sqlite":
            return [dict(r) for r in rows]
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, r)) for r in rows]


@functools.lru_cache(maxsize=1024)
def _format_marks(sql: str) -> str:
    """``?`` marks as psycopg's ``%s`` (our SQL holds no '?' in its literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _record_rows(cursor: Any) -> Callable[[Sequence[Any]], Record]:
    names = [column.name for column in cursor.description or ()]
    return lambda values: Record(zip(names, values))


class Database:
    """The store's database, every use under ``lock``: ``transaction()`` to write,
    ``reading()`` to read. ``target``: a SQLite file's path, or a ``postgresql://`` URL."""

    def __init__(self, target: Path | str):
        self.target = target
        self.engine = make_engine(target)
        self.dialect = self.engine.dialect.name
        #: other processes (replicas) use this database too: PostgreSQL
        self.shared = self.dialect == "postgresql"
        self.lock: ContextManager[Any] = (contextlib.nullcontext() if self.shared
                                          else threading.RLock())
        #: this process among the replicas (``Connection.origin``)
        self.origin = uuid.uuid4().hex[:12]
        dbapi = self.engine.dialect.loaded_dbapi
        self._unavailable: tuple[type[BaseException], ...] = (
            SAOperationalError, SATimeoutError, dbapi.OperationalError, dbapi.InterfaceError)
        self.migrate()
        self._sqlite: sqlite3.Connection | None = None
        if self.dialect == "sqlite":  # the pool's one connection (StaticPool), kept out
            self._checked_out = self.engine.raw_connection()
            self._sqlite = self._checked_out.driver_connection
            self._sqlite.row_factory = sqlite3.Row

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return Path(self.engine.url.database) if self.dialect == "sqlite" else None

    def migrate(self) -> None:
        """Bring the schema to Alembic's head. A SQLite database made before Alembic goes
        through the old list (``legacy``) to the baseline first, in the same transaction."""
        from alembic import command
        from alembic.util import CommandError

        with self.lock, self._reachable(opening=True), self.engine.connect() as conn, \
                conn.begin():
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" in tables and conn.exec_driver_sql(
                    "SELECT version_num FROM alembic_version").scalar() == HEAD:
                return
            config = alembic_config(conn)
            try:
                if "schema_version" in tables and "alembic_version" not in tables:
                    legacy.upgrade(conn, self.describe())
                    command.stamp(config, BASELINE)
                command.upgrade(config, "head")
            except CommandError as exc:
                raise ConfigError(
                    f"the database {self.describe()} has a schema this qick-queue does not "
                    f"know ({exc}): upgrade qick-queue") from None

    def describe(self) -> str:
        """The database for messages (a URL without its password)."""
        return str(self.path) if self.path else self.engine.url.render_as_string(
            hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction under the lock; rolled back on error."""
        with self.lock:
            if self._sqlite is None:
                with self._pooled() as conn:
                    yield conn
                return
            self._sqlite.execute("BEGIN IMMEDIATE")
            try:
                yield Connection(self._sqlite, "sqlite")
            except BaseException:
                self._sqlite.execute("ROLLBACK")
                raise
            self._sqlite.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """The connection for reads, under the lock (SQLite: no transaction)."""
        with self.lock:
            if self._sqlite is None:
                with self._pooled(autocommit=True) as conn:
                    yield conn
                return
            yield Connection(self._sqlite, "sqlite")

    @contextmanager
    def exclusive(self, job: str) -> Iterator[bool]:
        """Whether this process does ``job`` now (True) or another replica is doing it
        (False), until the block ends: on PostgreSQL a transaction-level advisory lock
        taken without waiting; on SQLite always True (one process per file)."""
        if not self.shared:
            yield True
            return
        with self._pooled() as conn:
            yield bool(conn.execute("SELECT pg_try_advisory_xact_lock(?)",
                                    (lock_key(job),)).fetchone()[0])

    @contextmanager
    def holding(self, name: str) -> Iterator[None]:
        """Hold the lock called ``name`` across replicas for the block (which may use other
        transactions): on PostgreSQL an advisory lock in a transaction of its own, waited
        for; on SQLite nothing (one process: its own locks do)."""
        if not self.shared:
            yield
            return
        with self._pooled() as conn:
            conn.hold(name)
            yield

    @contextmanager
    def _pooled(self, *, autocommit: bool = False) -> Iterator[Connection]:
        """A transaction on a pooled PostgreSQL connection (``autocommit``: none, each
        statement on its own, for reads: no BEGIN and COMMIT round trips)."""
        with self._reachable(), self.engine.connect() as conn:
            if autocommit:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                yield Connection(conn.connection.driver_connection, self.dialect, self.origin)
                return
            with conn.begin():
                yield Connection(conn.connection.driver_connection, self.dialect, self.origin)

    @contextmanager
    def _reachable(self, *, opening: bool = False) -> Iterator[None]:
        """Connection failures and an exhausted pool as ``DatabaseUnavailable``. The pool
        is emptied at the first failure (its other connections are likely dead too: the
        database restarted, or the network to it went), so the next requests connect
        afresh instead of each finding a dead connection."""
        try:
            yield
        except self._unavailable as exc:
            if self.shared:
                self.engine.dispose()
            reason = driver_reason(exc)[:200]
            if opening:
                raise DatabaseUnavailable(
                    f"cannot open the database {self.describe()}: {reason}: check the URL, "
                    "and that the server runs and lets this user in") from exc
            raise DatabaseUnavailable(
                f"the queue's database did not answer ({reason}): the request was not "
                "done; try again in a few seconds") from exc

    def close(self) -> None:
        with self.lock:
            self.engine.dispose()
            if self._sqlite is not None:
                self._sqlite.close()


def make_engine(target: Path | str) -> Engine:
    """A SQLite path (the embedded default) or a ``postgresql://`` URL (psycopg)."""
    text_target = str(target)
    if "://" not in text_target:
        return _sqlite_engine(Path(text_target))
    try:
        url = make_url(text_target)
    except ArgumentError:
        raise ConfigError(f"bad database URL {text_target!r}: give postgresql://user@host/"
                          "dbname or a SQLite file's path") from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"database {url.render_as_string(hide_password=True)!r}: only "
                          "PostgreSQL (postgresql://...) or a SQLite file's path is supported")
    options = (f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
               f"-c lock_timeout={LOCK_TIMEOUT_MS}")
    return create_engine(url.set(drivername="postgresql+psycopg"),
                         pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                         pool_timeout=POOL_TIMEOUT_SECONDS,
                         pool_recycle=POOL_RECYCLE_SECONDS,
                         connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS,
                                       "options": options,
                                       # a database host gone without a word is noticed
                                       "keepalives": 1, "keepalives_idle": 30,
                                       "keepalives_interval": 10, "keepalives_count": 3})


def driver_reason(exc: BaseException) -> str:
    """The first line of the driver's own words for a database error (SQLAlchemy's wrapper
    adds the SQL and a link)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def libpq_url(engine: Engine) -> str:
    """The engine's database as a libpq URL (for a connection outside the pool)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def lock_key(job: str) -> int:
    """A job's name as a PostgreSQL advisory lock key (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.sha256(job.encode()).digest()[:8], "big", signed=True)


def _sqlite_engine(path: Path) -> Engine:
    """One SQLite connection shared by threads (always under ``Database.lock``), WAL; a
    SQLAlchemy transaction (the migrations) starts with ``BEGIN IMMEDIATE``."""
    engine = create_engine(f"sqlite:///{path}", poolclass=StaticPool,
                           connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are ours (begin below)
        # a 64 MB page cache (SQLite's default: 2 MB), filled as pages are read: a long
        # queue or a month of a team's ledger is read from it, not through the OS
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "cache_size=-65536"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: SAConnection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(conn: SAConnection) -> Any:
    """Alembic's configuration for the store on ``conn`` (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config
