"""Fixtures of the service tests: one service shared by a test module (each test makes
its own users and devices, so tests do not see each other's work)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import QueueService, start_queue_service
from tests.server.api import World


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    service = start_queue_service(Path(tmp_path_factory.mktemp("queue")))
    yield service
    service.stop()


@pytest.fixture
def world(shared_service: QueueService) -> World:
    return World(shared_service)
