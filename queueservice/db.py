"""The database: SQLite (the embedded default: a file, WAL) or PostgreSQL; the tables
declared once (``schema``, SQLAlchemy) and migrated by Alembic (``queueservice/migrations``,
configured here: no alembic.ini).

The store's queries are SQL both engines run alike, with ``?`` marks, executed on the
driver's own cursor (``Connection.execute``). SQLAlchemy declares the tables, runs the
migrations, parses the URL and keeps PostgreSQL's connection pool; its statement and
result layer is not on the request path because, measured on the embedded default, it
made a status request 3-10 times slower (bench/bench_queue.py, docs in the README). Where
the engines differ, the caller asks ``Connection.dialect``.

Every use is under one lock in this process. On SQLite that lock guards the one
connection and a write is ``BEGIN IMMEDIATE`` (the file's write lock at once); reads run
outside a transaction, each statement its own snapshot, as they always have. On
PostgreSQL each transaction takes a pooled connection; the compare-and-set of
``workloads.write`` and the row locks of the claim keep the guarantees against other
replicas on the same database.
"""
from __future__ import annotations

import functools
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from sqlalchemy import Engine, create_engine, event, inspect, make_url
from sqlalchemy import Connection as SAConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from cloudqueue.errors import ConfigError
from queueservice import legacy

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: the Alembic revision equal to the last hand-written schema (``legacy.SCHEMA_VERSION``)
BASELINE = "0001_baseline"
#: the newest revision in ``migrations/versions`` (a test checks): a database already
#: there starts the service without loading Alembic (a fifth of a second)
HEAD = "0001_baseline"


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
    marks and its parameters in order; ``dialect`` is ``"sqlite"`` or ``"postgresql"``."""

    def __init__(self, driver: Any, dialect: str):
        self.driver = driver
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        if self.dialect == "sqlite":
            return self.driver.execute(sql, params)
        cursor = self.driver.cursor(row_factory=_record_rows)
        cursor.execute(_format_marks(sql),
                       [int(v) if isinstance(v, bool) else v for v in params])
        return cursor


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
        self.lock = threading.RLock()
        self.engine = make_engine(target)
        self.dialect = self.engine.dialect.name
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

        with self.lock, self.engine.connect() as conn, conn.begin():
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
                with self.engine.connect() as conn, conn.begin():
                    yield Connection(conn.connection.driver_connection, self.dialect)
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
                with self.engine.connect() as conn, conn.begin():
                    yield Connection(conn.connection.driver_connection, self.dialect)
                return
            yield Connection(self._sqlite, "sqlite")

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
    return create_engine(url.set(drivername="postgresql+psycopg"), pool_pre_ping=True)


def _sqlite_engine(path: Path) -> Engine:
    """One SQLite connection shared by threads (always under ``Database.lock``), WAL; a
    SQLAlchemy transaction (the migrations) starts with ``BEGIN IMMEDIATE``."""
    engine = create_engine(f"sqlite:///{path}", poolclass=StaticPool,
                           connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are ours (begin below)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
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
