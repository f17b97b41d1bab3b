"""``qick-queue serve --stock-protocol`` answers as the stock AWS service does (the facts of
API.md, "Observed behaviour"): the gateway's 403 on paths it does not know, its request
models (400 ``Invalid request body``), a handler's 500 for unknown ids, and ``UserGivenName``
as the submitter's name. ``UserGivenName`` means the same on our own service, where the
workload's own name is ``WorkloadName``; old databases are migrated. Each on both database
engines (SQLite, PostgreSQL), but the migration of an old SQLite file."""
from __future__ import annotations

import sqlite3
import uuid
from typing import Iterator

import pytest
import requests

from queueservice.db import Database
from queueservice.legacy import MIGRATIONS, SCHEMA_VERSION, statements
from tests.conftest import QueueService, start_queue_service
from tests.server.api import Api, World, assert_error, submit
from tests.server.conftest import DATABASES, engine_options

MISSING_TOKEN = {"message": "Missing Authentication Token"}
INVALID_BODY = {"message": "Invalid request body"}


@pytest.fixture(scope="module", params=DATABASES)
def stock_service(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    """The module's ``--stock-protocol`` service on each database engine (each test makes
    its own users and devices, as on ``world``'s)."""
    service = start_queue_service(tmp_path_factory.mktemp(f"stock-{request.param}"),
                                  stock_protocol=True, prefix="/dev",
                                  **engine_options(request.param, request))
    yield service
    service.stop()


@pytest.fixture
def stock(stock_service: QueueService) -> World:
    return World(stock_service)


def named_user(world: World, full_name: str) -> Api:
    answer = world.admin.post("/users", json={"Email": f"{uuid.uuid4().hex[:8]}@lab.test",
                                              "FullName": full_name})
    assert answer.status_code == 200, answer.text
    return Api(world.service.url, answer.json()["ApiKey"])


def test_paths_the_gateway_does_not_know_answer_403_missing_authentication_token(stock):
    device = stock.device()
    user, _ = stock.user()
    work_id = submit(user, device.id)
    url, root = stock.service.url, stock.service.root
    answers = {
        "capabilities, no auth": requests.get(url + "/capabilities", timeout=10),
        "capabilities, a user": user.get("/capabilities"),
        "cancel": user.post(f"/workloads/{work_id}/cancel"),
        "the device's cancel check": device.api.get(f"/devices/{device.id}/workloads/{work_id}"),
        "an unknown path": user.get("/no/such/path"),
        "a method the path lacks": user.call("DELETE", "/workloads"),
        "outside the stage": requests.get(root + "/workloads", timeout=10),
        "an id with a NUL, which no stored id holds": user.get("/workloads/%00"),
    }
    for what, answer in answers.items():
        assert (answer.status_code, answer.json()) == (403, MISSING_TOKEN), what
    # the stock paths themselves still answer
    assert user.get(f"/workloads/{work_id}").json()["WorkStatus"] == "READY"


def test_our_own_service_keeps_its_paths(world: World):
    assert requests.get(world.service.url + "/capabilities", timeout=10).status_code == 200
    assert_error(world.admin.get("/no/such/path"), 404, "not_found")


def test_bodies_the_gateways_models_refuse_are_400_invalid_request_body(stock):
    device = stock.device()
    user, _ = stock.user()
    refused = {
        "DeviceStatus ERROR": device.heartbeat("ERROR"),
        "DeviceStatus lower case": device.heartbeat("online"),
        "no DeviceConfigurationFileExtension": device.api.put(
            f"/devices/{device.id}", json={"DeviceStatus": "ONLINE"}),
        "RefreshTimeout as a string": stock.admin.post(
            "/devices", json={"DeviceName": "d", "RefreshTimeout": "60"}),
        "no DeviceName": stock.admin.post("/devices", json={"RefreshTimeout": 60}),
        "an unknown Priority": user.post("/workloads", json={"DeviceId": device.id,
                                                             "Priority": "URGENT"}),
        "no Priority": user.post("/workloads", json={"DeviceId": device.id}),
        "no FullName": stock.admin.post("/users", json={"Email": "x@lab.test"}),
        "not JSON": user.post("/workloads", data=b"{nope",
                              headers={"Content-Type": "application/json"}),
    }
    for what, answer in refused.items():
        assert (answer.status_code, answer.json()) == (400, INVALID_BODY), what
    for status in ("ONLINE", "BUSY", "OFFLINE"):
        assert device.heartbeat(status).status_code == 200, status
    listed = user.get("/devices").json()
    assert [d["DeviceStatus"] for d in listed if d["DeviceId"] == device.id] == ["OFFLINE"]


def test_our_own_service_takes_error_and_answers_its_own_400s(world: World):
    device = world.device()
    assert device.heartbeat("ERROR").status_code == 200
    assert_error(device.heartbeat("SLEEPY"), 400, "bad_request")


def test_unknown_ids_answer_the_stock_handlers_500(stock):
    user, _ = stock.user()
    other, _ = stock.user()
    device = stock.device()
    theirs = submit(other, device.id)
    for work_id in (str(uuid.uuid4()), theirs):  # a stranger's work looks missing too
        answer = user.get(f"/workloads/{work_id}")
        assert (answer.status_code, answer.json()) == (500, {
            "ErrorMessage": "Cannot destructure property 'WorkBucket' of 'Work' as it is "
                            "undefined."})
    answer = user.get(f"/devices/{uuid.uuid4()}")
    assert (answer.status_code, answer.json()) == (500, {
        "ErrorMessage": "Cannot destructure property 'DeviceName' of 'Device' as it is "
                        "undefined."})


def test_the_results_url_is_there_in_every_state_as_on_the_stock_service(stock):
    user, _ = stock.user()
    device = stock.device()
    work_id = submit(user, device.id)
    ready = user.get(f"/workloads/{work_id}").json()
    assert ready["WorkStatus"] == "READY"
    assert requests.get(ready["WorkloadResultUrl"], timeout=10).status_code == 404
    assert device.next_work().json()["WorkId"] == work_id
    upload = device.report(work_id).json()["UploadUrl"]
    assert requests.put(upload, data=b"results", timeout=10).status_code == 200
    done = user.get(f"/workloads/{work_id}").json()
    assert done["WorkStatus"] == "DONE"
    assert requests.get(done["WorkloadResultUrl"], timeout=10).content == b"results"


def test_reporting_work_not_on_the_device_is_404_with_an_empty_body(stock):
    user, _ = stock.user()
    mine, other = stock.device(), stock.device()
    work_id = submit(user, other.id)
    for unknown in (work_id, str(uuid.uuid4())):
        answer = mine.report(unknown)
        assert (answer.status_code, answer.content) == (404, b"")


def test_our_own_service_shows_the_results_url_once_results_exist(world: World):
    user, _ = world.user()
    work_id = submit(user, world.device().id)
    assert "WorkloadResultUrl" not in user.get(f"/workloads/{work_id}").json()


def test_our_own_service_answers_404_for_unknown_ids(world: World):
    user, _ = world.user()
    assert_error(user.get(f"/workloads/{uuid.uuid4()}"), 404, "not_found")
    assert_error(user.get(f"/devices/{uuid.uuid4()}"), 404, "not_found")


def user_given_name_is_the_submitters_full_name(world: World, *, stock_protocol: bool) -> None:
    device = world.device()
    ada = named_user(world, "Ada Lovelace")
    # a body cannot claim another submitter; a workload's own name is WorkloadName (ours)
    work_id = submit(ada, device.id, UserGivenName="Mallory", WorkloadName="sweep-7.gz")
    item, = ada.get("/workloads", params={"DeviceId": device.id}).json()["Items"]
    assert item["WorkId"] == work_id and item["UserGivenName"] == "Ada Lovelace"
    detail = ada.get(f"/workloads/{work_id}").json()
    assert detail["UserGivenName"] == "Ada Lovelace"
    if not stock_protocol:
        assert item["WorkloadName"] == detail["WorkloadName"] == "sweep-7.gz"


def test_user_given_name_is_the_submitters_full_name_under_the_stock_protocol(stock):
    user_given_name_is_the_submitters_full_name(stock, stock_protocol=True)


def test_user_given_name_is_the_submitters_full_name_on_our_own_service(world: World):
    user_given_name_is_the_submitters_full_name(world, stock_protocol=False)


def test_a_schema_2_database_moves_workload_names_to_workload_name(tmp_path):
    path = tmp_path / "queue.db"
    old = sqlite3.connect(str(path), isolation_level=None)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for script in MIGRATIONS[:2]:
        for statement in statements(script):
            old.execute(statement)
    old.execute("INSERT INTO schema_version (version) VALUES (2)")
    old.execute("INSERT INTO users (user_id, email, full_name, created_at) "
                "VALUES ('u1', 'ada@lab.test', 'Ada Lovelace', 0), "
                "('u2', 'nn@lab.test', '', 0)")
    for work_id, account, name in (("w1", "u1", "sweep.gz"), ("w2", "u2", None),
                                   ("w3", "gone", "x.gz")):
        old.execute("INSERT INTO workloads (work_id, device_id, account_id, user_given_name, "
                    "priority, status, created_at) VALUES (?, 'd', ?, ?, 'LOW', 'READY', 0)",
                    (work_id, account, name))
    old.close()

    db = Database(path)
    try:
        assert SCHEMA_VERSION >= 3
        with db.reading() as conn:
            rows = {r["work_id"]: (r["user_given_name"], r["workload_name"]) for r in
                    conn.execute("SELECT * FROM workloads")}
    finally:
        db.close()
    assert rows == {"w1": ("Ada Lovelace", "sweep.gz"), "w2": (None, None),
                    "w3": (None, "x.gz")}
