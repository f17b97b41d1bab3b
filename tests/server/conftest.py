"""Fixtures of the service tests: one service shared by a test module per database engine
(each test makes its own users and devices, so tests do not see each other's work).

The contract, authorization, bad-input and Part 2 tests run once on each database engine
(``DATABASES``): "sqlite" (the data folder's queue.db, the embedded default) and
"postgresql" (a database of its own on the session's real PostgreSQL server:
tests/pgserver.py; skipped where its binaries are missing, a failure in CI).

``world``             a World on the module's service of each engine (files in its data
                      folder).
``files_world``       the same on a service per engine and file store: the data folder
                      ("local") and S3 ("s3": moto's server mode, a real HTTP S3 endpoint),
                      for the tests of the file contract, which run against each pair.
``database_options``  the ``serve`` options of each engine, for tests that start their own
                      service: ``queue_service_factory(**database_options)``.
``files_options``     the ``serve`` options (and environment) of each file store, likewise:
                      ``queue_service_factory(**files_options)``.
``s3``                the S3 endpoint (``MotoS3``), started once per test session.
``engine_options(engine, request)``  the ``serve`` options of one engine, for a fixture of
                      a module's own (test_fuzz.py).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from queueservice import facility
from queueservice.db import Database
from tests.conftest import QueueService, start_queue_service
from tests.pgserver import PostgresServer
from tests.server.api import World, email_of, new_team

DATABASES = ["sqlite", "postgresql"]
FILE_STORES = ["local", "s3"]


class MotoS3:
    """moto's S3 in server mode on a free loopback port (``port``: 0 picks one; a given
    port starts it again where it was, with the objects it had: they live in this
    process)."""

    _buckets = itertools.count()

    def __init__(self, port: int = 0):
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        #: what a service needs to reach it: the standard AWS variables (fake credentials:
        #: moto accepts any), few retries so that a stopped endpoint fails fast
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing-key-id",
                    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_RETRY_MODE": "standard",
                    "AWS_MAX_ATTEMPTS": "2"}
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing-key-id",
                                   aws_secret_access_key="testing-secret-key")

    def new_bucket(self) -> str:
        name = f"qick-files-{next(self._buckets)}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[MotoS3]:
    store = MotoS3()
    yield store
    store.stop()


def _options(store: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if store == "local":
        return {}
    s3_store: MotoS3 = request.getfixturevalue("s3")
    return {"files": f"s3://{s3_store.new_bucket()}/queue", "env": s3_store.env}


def engine_options(engine: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The options of ``engine``: none for SQLite, a new database for PostgreSQL."""
    if engine == "sqlite":
        return {}
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return {"database": server.create_database()}


@pytest.fixture(params=FILE_STORES)
def files_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _options(request.param, request)


@pytest.fixture(params=DATABASES)
def database_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return engine_options(request.param, request)


@pytest.fixture(scope="module", params=DATABASES)
def shared_service(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    service = start_queue_service(Path(tmp_path_factory.mktemp(f"queue-{request.param}")),
                                  **engine_options(request.param, request))
    yield service
    service.stop()


@pytest.fixture(scope="module", params=[(engine, store) for engine in DATABASES
                                        for store in FILE_STORES],
                ids=lambda pair: "-".join(pair))
def files_service(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    engine, store = request.param
    service = start_queue_service(
        Path(tmp_path_factory.mktemp(f"queue-{engine}-{store}")),
        **engine_options(engine, request), **_options(store, request))
    yield service
    service.stop()


@pytest.fixture
def world(shared_service: QueueService) -> World:
    return World(shared_service)


@pytest.fixture
def files_world(files_service: QueueService) -> World:
    return World(files_service)


@pytest.fixture
def team(world: World) -> dict[str, Any]:
    """A team with a scheduler (pi) and a user member (student), and an outsider."""
    pi, pi_id = world.user()
    student, student_id = world.user()
    outsider, outsider_id = world.user()
    made = new_team(world, scheduler=pi_id)
    added = pi.post(f"/teams/{made['TeamId']}/members",
                    json={"User": email_of(world, student_id), "Role": "user"})
    assert added.status_code == 201, added.text
    return {"id": made["TeamId"], "name": made["Name"], "pi": pi, "pi_id": pi_id,
            "student": student, "student_id": student_id, "outsider": outsider,
            "outsider_id": outsider_id}


@pytest.fixture
def accounting_off_after(world: World) -> Iterator[Database]:
    """The service's own database; accounting (a service-wide switch, which setting a price
    also turns on) is off again after the test, for the module's next tests."""
    db = Database(world.service.database_target)
    yield db
    with db.transaction() as conn:
        facility.set_accounting(conn, False)
    db.close()


@pytest.fixture
def accounting(accounting_off_after: Database) -> Database:
    """Accounting on for the test (set in the service's own database), off after it."""
    with accounting_off_after.transaction() as conn:
        facility.set_accounting(conn, True)
    return accounting_off_after


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The store's database on each engine: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        database = Database(tmp_path / "queue.db")
    else:
        database = Database(request.getfixturevalue("postgres_url"))
    yield database
    database.close()
