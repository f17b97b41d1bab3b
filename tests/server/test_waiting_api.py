"""``Waiting`` over HTTP on each engine: READY work a facility rule holds says which rule,
why and until when in ``GET /workloads/{id}`` and in the ``GET /workloads`` items (its
``WorkStatus`` stays READY: the original clients know only the stock statuses); its
QueuePosition and EstimatedStartAt come from the forecast (after the maintenance, in the
order the policy hands out); a device with no rule answers as it always did."""
from __future__ import annotations

from typing import Iterator

import pytest

from cloudqueue.models import parse_time
from queueservice import clock
from queueservice.db import Database
from tests import facility_rows as rows
from tests.server.api import World, status, submit

S = 1000  # ms


@pytest.fixture
def db(world: World) -> Iterator[Database]:
    database = Database(world.service.database_target)
    yield database
    database.close()


def ms(text: str) -> int:
    return round(parse_time(text).timestamp() * 1000)


def test_work_held_by_maintenance_says_why_until_when_and_when_it_may_start(world, db):
    user, _ = world.user()
    device = world.device()
    assert device.heartbeat().status_code == 200  # online: an offline one has no estimate
    now = clock.now_ms()
    end = now + 3600 * S
    rows.book(db, device.id, now - S, end, now, reason="magnet ramp")
    first = submit(user, device.id)
    rows.mark(db, first, estimated_seconds=20.0)
    second = submit(user, device.id)
    body = status(user, first)
    assert body["WorkStatus"] == "READY"
    assert body["Waiting"]["Rule"] == "maintenance"
    assert "magnet ramp" in body["Waiting"]["Message"]
    assert ms(body["Waiting"]["Until"]) == end
    assert body["QueuePosition"] == 1 and ms(body["EstimatedStartAt"]) == end
    later = status(user, second)
    assert later["QueuePosition"] == 2
    assert ms(later["EstimatedStartAt"]) >= end + 20 * S  # after the first one's own 20 s
    items = {i["WorkId"]: i for i in user.get("/workloads", params={"Limit": 10}).json()["Items"]}
    assert items[first]["WorkStatus"] == "READY"
    assert items[first]["Waiting"]["Rule"] == "maintenance"
    assert device.next_work().json() == []  # and nothing is handed out


def test_work_behind_other_work_says_why_it_stands_there(world, db):
    user, _ = world.user()
    device = world.device()
    now = clock.now_ms()
    rows.book(db, device.id, now + 3600 * S, now + 7200 * S, now)  # a rule on this device
    first = submit(user, device.id)
    second = submit(user, device.id)
    body = status(user, second)
    assert "Waiting" not in body and body["QueueReason"] == f"behind {first}: earlier in line"
    assert "Waiting" not in status(user, first)


def test_a_device_without_rules_answers_as_before(world):
    user, _ = world.user()
    device = world.device()
    work = submit(user, device.id)
    body = status(user, work)
    assert "Waiting" not in body and "QueueReason" not in body
    assert body["QueuePosition"] == 1
    items = user.get("/workloads", params={"Limit": 5}).json()["Items"]
    assert all("Waiting" not in i for i in items)
