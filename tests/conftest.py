"""Shared fixtures: a real ``qick-queue`` service in a subprocess on a free loopback port.

``queue_service``          a fresh service (function scope), default limits.
``queue_service_factory``  ``factory(**serve_options)`` -> a fresh service with options such
                           as ``lease_seconds=1``, ``max_attempts=2``, ``prefix="/dev"``,
                           ``max_upload_mb=0.01``; all are stopped at the end of the test.
``start_queue_service(data_dir, **serve_options)``  the same, for other scopes.
``env={...}`` (with any of them) adds environment variables to the service's process
(e.g. the S3 endpoint and credentials of ``files="s3://..."``: tests/server/conftest.py).
``database="postgresql://..."`` (with any of them) keeps the state in that database, made
by the init as ``qick-queue init --database`` does (tests/server/conftest.py).

Each service object has ``url`` (the API endpoint, with the prefix), ``root`` (the service
root: /oauth2/token, /files), ``port``, ``data_dir``, ``admin_key`` (a bearer API key of the
first admin), ``admin_conf`` (a ready userclient config), ``log_path``, and ``stop()``
(SIGTERM, clean), ``kill()`` (SIGKILL), ``restart()`` (start again on the same data and
the same port, so URLs stay valid), ``running``, ``database_target`` (what
``queueservice.db.Database`` opens: the PostgreSQL URL, else the data folder's queue.db).
"""
from __future__ import annotations

import configparser
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from queueservice.datadir import DataDir, init_data_dir
from queueservice.settings import DEFAULT_ADMIN_EMAIL
from tests.helpers import wait_for
from tests.pgserver import PostgresServer, find_binaries, unavailable


class QueueService:
    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, **options: Any):
        self.data_dir = Path(data_dir)
        self.env = dict(env or {})
        self.options = options
        self.prefix = "/" + str(options.get("prefix", "")).strip("/") if options.get("prefix") else ""
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "service.log"
        self.admin_conf = self.data_dir / "admin.conf"
        if not self.admin_conf.exists():
            # what `qick-queue init --port 0` does, without a process start (the CLI's own
            # init is tested in tests/server/test_lifecycle.py)
            init_data_dir(self.data_dir, port=0, admin_email=DEFAULT_ADMIN_EMAIL,
                          database=options.get("database"))
        conf = configparser.ConfigParser()
        conf.read(self.admin_conf)
        self.admin_key = conf["user"]["api_key"]
        self.admin_email = conf["user"]["username"]

    @property
    def database_target(self) -> Path | str:
        return DataDir(self.data_dir, self.options.get("database")).database_target

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + self.prefix

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> "QueueService":
        port_file = self.data_dir / "port"
        port_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "queueservice.cli", "serve", "--data",
                str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port or 0),
                "--port-file", str(port_file), "--log-level", "warning"]
        for name, value in self.options.items():
            flag = f"--{name.replace('_', '-')}"
            args += [flag] if value is True else [flag, str(value)]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env={**os.environ, **self.env})
        log.close()

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qick-queue exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            return port_file.exists() and port_file.read_text().strip() != ""

        wait_for(listening, timeout, what="qick-queue to listen")
        self.port = int(port_file.read_text())
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; answers the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> "QueueService":
        self.stop()
        return self.start()


def start_queue_service(data_dir: Path, **options: Any) -> QueueService:
    """Init (if needed) and start a service on ``data_dir``."""
    return QueueService(data_dir, **options).start()


@pytest.fixture
def queue_service_factory(tmp_path: Path) -> Iterator[Callable[..., QueueService]]:
    started: list[QueueService] = []

    def factory(**options: Any) -> QueueService:
        service = start_queue_service(tmp_path / f"queue{len(started)}", **options)
        started.append(service)
        return service

    yield factory
    for service in started:
        service.stop()


@pytest.fixture
def queue_service(queue_service_factory: Callable[..., QueueService]) -> QueueService:
    return queue_service_factory()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (tests/pgserver.py); skipped when its
    binaries are missing here, a failure in CI."""
    binaries = find_binaries()
    if binaries is None:
        unavailable("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    server = PostgresServer(binaries)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new empty database on the session's server (one per test)."""
    return postgres_server.create_database()
