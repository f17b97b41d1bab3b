"""``qick-queue init/serve --database postgresql://...``: the real CLI on a real PostgreSQL
server (tests/pgserver.py). The state is in the database, not in a queue.db; it outlives a
restart; a second init on the same database is refused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import QueueService
from tests.server.api import World, status, submit


def init(data: Path, database: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "queueservice.cli", "init", "--data",
                           str(data), "--port", "0", "--database", database],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def pg_service(tmp_path: Path, postgres_url: str):
    done = init(tmp_path / "q", postgres_url)
    assert done.returncode == 0, done.stderr
    assert "--database URL" in done.stdout and postgres_url not in done.stdout
    service = QueueService(tmp_path / "q", database=postgres_url).start()
    yield service
    service.stop()


def test_serve_keeps_its_state_in_postgresql_across_a_restart(pg_service, postgres_url):
    world = World(pg_service)
    user, _ = world.user()
    device = world.device()
    work = submit(user, device.id)
    assert status(user, work)["WorkStatus"] == "READY"
    assert not (pg_service.data_dir / "queue.db").exists()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT status FROM workloads WHERE work_id = %s",
                            (work,)).fetchone() == ("READY",)
    pg_service.restart()
    handed = device.next_work(wait=0)
    assert handed.status_code == 200 and handed.json()["WorkId"] == work
    assert status(user, work)["WorkStatus"] == "EXECUTING"


def test_init_refuses_a_database_that_already_holds_a_store(pg_service, postgres_url,
                                                            tmp_path: Path):
    again = init(tmp_path / "other", postgres_url)
    assert again.returncode == 1
    assert "already holds a qick-queue store" in again.stderr


def test_init_refuses_a_database_url_it_cannot_use(tmp_path: Path):
    done = init(tmp_path / "q", "mysql://root@localhost/queue")
    assert done.returncode == 1
    assert "only PostgreSQL (postgresql://...) or a SQLite file's path" in done.stderr
