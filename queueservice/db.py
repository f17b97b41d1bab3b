"""The database: SQLite (the embedded default: a file, WAL) or PostgreSQL, through
SQLAlchemy; the schema declared once (``schema``) and migrated by Alembic
(``queueservice/migrations``, configured here: no alembic.ini).

Every use is under one lock in this process, so a claim reads and updates in one
transaction that no other thread of the service interleaves. On SQLite a write transaction
is ``BEGIN IMMEDIATE`` (the file's write lock at once, as before); on PostgreSQL the
compare-and-set of ``workloads.write`` and the row locks of the claim keep the guarantees
against other processes on the same database.

The store modules run engine-neutral SQL with ``?`` marks (``Connection.execute``) and
SQLAlchemy Core where the engines differ (``workloads``).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy import Connection as SAConnection
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import Executable

from cloudqueue.errors import ConfigError
from queueservice import legacy

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: the Alembic revision equal to the last hand-written schema (``legacy.SCHEMA_VERSION``)
BASELINE = "0001_baseline"


class Record(dict):
    """A row: by column name (``row["status"]``, ``dict(row)``) or by position
    (``row[0]``), as ``sqlite3.Row`` was."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


class Result:
    """The answer of ``Connection.execute``: rows as ``Record`` (read at once), or the
    count of rows a write changed."""

    def __init__(self, result: CursorResult):
        self.rowcount = result.rowcount
        self.rows = ([Record(r._mapping) for r in result] if result.returns_rows else [])

    def fetchone(self) -> Record | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Record]:
        return self.rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def __iter__(self) -> Iterator[Record]:
        return iter(self.rows)


class Connection:
    """One transaction's connection. ``execute`` takes a SQLAlchemy Core statement, or an
    engine-neutral SQL string with ``?`` marks and its parameters in order."""

    def __init__(self, connection: SAConnection):
        self.connection = connection
        self.dialect = connection.dialect.name

    def execute(self, statement: str | Executable,
                params: Sequence[Any] | Mapping[str, Any] = ()) -> Result:
        if isinstance(statement, str):
            statement, params = _qmark_text(statement, params)
        return Result(self.connection.execute(statement, dict(params) if params else None))


def _qmark_text(sql: str, params: Sequence[Any]) -> tuple[Executable, dict[str, Any]]:
    """``?`` marks to SQLAlchemy's named binds (our SQL holds no '?' or ':' in literals);
    booleans as the 0/1 the schema stores."""
    parts = sql.replace(":", r"\:").split("?")
    if len(parts) - 1 != len(params):
        raise ValueError(f"{len(parts) - 1} marks and {len(params)} parameters in: {sql}")
    named = "".join(part + (f":p{i}" if i < len(params) else "")
                    for i, part in enumerate(parts))
    values = {f"p{i}": int(v) if isinstance(v, bool) else v for i, v in enumerate(params)}
    return text(named), values


class Database:
    """The store's database, every use under ``lock``: ``transaction()`` to write,
    ``reading()`` to read. ``target``: a SQLite file's path, or a ``postgresql://`` URL."""

    def __init__(self, target: Path | str):
        self.target = target
        self.lock = threading.RLock()
        self.engine = make_engine(target)
        self.dialect = self.engine.dialect.name
        self.migrate()

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return Path(self.engine.url.database) if self.dialect == "sqlite" else None

    def migrate(self) -> None:
        """Bring the schema to Alembic's head. A SQLite database made before Alembic goes
        through the old list (``legacy``) to the baseline first, in the same transaction."""
        with self.lock, self.engine.connect() as conn, conn.begin():
            tables = set(inspect(conn).get_table_names())
            config = _alembic_config(conn)
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
        with self.lock, self.engine.connect() as conn, conn.begin():
            yield Connection(conn)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction under the lock (on SQLite a plain ``BEGIN``: no write lock)."""
        with self.lock, self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="BEGIN")
            with conn.begin():
                yield Connection(conn)

    def close(self) -> None:
        with self.lock:
            self.engine.dispose()


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
    transaction starts with ``BEGIN IMMEDIATE`` unless it asks for a plain ``BEGIN``."""
    engine = create_engine(f"sqlite:///{path}", poolclass=StaticPool,
                           connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are ours (begin below)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: SAConnection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin",
                                                              "BEGIN IMMEDIATE"))

    return engine


def _alembic_config(conn: SAConnection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config
