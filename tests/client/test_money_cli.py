"""``userclient price set|show``, ``submit --team --max-seconds --timeslot --on-slot-end``
with the estimated cost shown before it is queued, and ``list --team`` (real subprocesses
against the real service): ``--json``; every refusal one line with the documented exit
code (3 not allowed or in no team, 4 no such team or device, 7 no credit or no timeslot,
2 bad arguments), no traceback; work its team cannot cover leaves nothing queued."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from executor.boards import zcu216_v2
from tests.client.test_admin_cli import ok, run, write_config
from tests.client.test_submit_checks import v2_workload  # noqa: F401 (a fixture)
from tests.client.test_team_cli import refused
from tests.conftest import QueueService, start_queue_service
from tests.server.api import World, put_file
from tests.server.api import email_of, grant, new_team
from userclient.client import UserClient
from userclient.estimate import estimate_file


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    started = start_queue_service(Path(tmp_path_factory.mktemp("money-cli")))
    yield started
    started.stop()


@pytest.fixture
def lab(service: QueueService, tmp_path: Path) -> dict:
    """A device with the simulated board's soccfg, the admin's config, a team with a
    scheduler (pi) and a user (student), and an outsider in no team: each a config."""
    world = World(service)
    device = world.device(f"board-{uuid.uuid4().hex[:6]}")
    url = device.heartbeat().json()["UploadUrl"]
    assert put_file(url, json.dumps(zcu216_v2()).encode()).status_code == 200
    people: dict = {"world": world, "device": device.id, "board": device,
                    "admin": write_config(tmp_path / "admin.conf", service, service.admin_key)}
    ids = {}
    for who in ("pi", "student", "outsider"):
        api, ids[who] = world.user()
        people[who] = write_config(tmp_path / f"{who}.conf", service, api.token)
        people[who + "_api"] = api
    team = new_team(world, scheduler=ids["pi"])
    added = people["pi_api"].post(f"/teams/{team['TeamId']}/members",
                                  json={"User": email_of(world, ids["student"]),
                                        "Role": "user"})
    assert added.status_code == 201, added.text
    people.update(team=team["Name"], team_id=team["TeamId"], ids=ids)
    return people


def test_an_admin_sets_prices_and_everyone_reads_them(lab):
    admin, student, device = lab["admin"], lab["student"], lab["device"]
    refused(run(student, "price", "set", device, "--per-used-second", "1",
                "--per-reserved-second", "1"), 3, "only an admin")
    bad = run(admin, "price", "set", device, "--per-used-second", "-1",
              "--per-reserved-second", "1")
    assert bad.returncode == 2 and "0 or more, not '-1'" in bad.stderr
    refused(run(admin, "price", "set", "no-such-device", "--per-used-second", "1",
                "--per-reserved-second", "1"), 4, "no device no-such-device")
    set_ = ok(run(admin, "price", "set", device, "--per-used-second", "2",
                  "--per-reserved-second", "3.5"))
    assert f"device {device}: 2 per used second, 3.5 per reserved second (accounting on)" \
        in set_.stdout
    ok(run(admin, "price", "set", device, "--per-used-second", "2.5",
           "--per-reserved-second", "4"))
    shown = json.loads(ok(run(student, "price", "show", device, "--json")).stdout)
    assert (shown["PerUsedSecond"], shown["PerReservedSecond"], shown["Accounting"]) == \
        (2.5, 4.0, True)
    assert [h["PerUsedSecond"] for h in shown["History"]] == [2.5, 2.0]
    assert "PER USED S" in ok(run(student, "price", "show", device)).stdout


def test_submit_shows_the_cost_and_refuses_what_the_team_cannot_pay(lab, v2_workload):
    admin, student, device, team = lab["admin"], lab["student"], lab["device"], lab["team"]
    ok(run(admin, "price", "set", device, "--per-used-second", "2",
           "--per-reserved-second", "2"))
    path = str(v2_workload)
    refused(run(lab["outsider"], "submit", path, "--device", device), 3,
            "you are in no team")
    refused(run(lab["outsider"], "submit", path, "--device", device, "--team", team), 4,
            f"no team {team} of yours")
    refused(run(student, "submit", path, "--device", device), 7, "no credit left")
    refused(run(student, "submit", path, "--device", device, "--on-slot-end", "fail"), 2,
            "--timeslot work only")
    zero = run(student, "submit", path, "--device", device, "--max-seconds", "0")
    assert zero.returncode == 2 and "must be more than 0" in zero.stderr
    refused(run(student, "submit", path, "--device", device, "--timeslot"), 7,
            "no timeslot booked")

    grant(lab["world"], lab["team_id"], 100)
    seconds = estimate_file(v2_workload).seconds
    estimated = json.loads(ok(run(student, "--json", "estimate", path, "--device",
                                  device)).stdout)
    assert estimated["Submitted"] is False and estimated["PerUsedSecond"] == 2.0
    assert estimated["EstimatedCost"] == pytest.approx(2 * estimated["Seconds"], abs=1e-6)
    assert "estimated cost:" in ok(run(student, "estimate", path, "--device", device)).stdout
    done = ok(run(student, "--json", "submit", path, "--device", device, "--team", team,
                  "--max-seconds", "30"))
    answer = json.loads(done.stdout)
    assert answer["EstimatedCost"] == pytest.approx(2 * seconds, abs=1e-6)
    assert "estimated cost:" in done.stderr and "per used second" in done.stderr
    shown = json.loads(ok(run(student, "--json", "status", answer["WorkId"])).stdout)
    assert shown["TeamId"] == lab["team_id"]
    assert shown["EstimatedCost"] == pytest.approx(answer["EstimatedCost"])
    assert "EstimatedCost" in ok(run(student, "status", answer["WorkId"])).stdout


def test_work_refused_at_upload_is_not_left_queued(lab, v2_workload):
    admin, student, device = lab["admin"], lab["student"], lab["device"]
    ok(run(admin, "price", "set", device, "--per-used-second", "1000000",
           "--per-reserved-second", "1"))
    grant(lab["world"], lab["team_id"], 1)  # more than 0: announced; less than the run
    result = run(student, "submit", str(v2_workload), "--device", device, "--force")
    message = refused(result, 7, "nothing was queued")
    assert "balance is 1 device-seconds" in message and "credits request" in message
    items = lab["student_api"].get("/workloads").json()["Items"]
    assert [w["WorkStatus"] for w in items] == ["CANCELLED"]


def test_members_list_the_team_queue_outsiders_are_told_there_is_none(lab, v2_workload):
    grant(lab["world"], lab["team_id"], 1000)
    client = UserClient.from_config(lab["pi"])
    mine = client.create_work(str(v2_workload), lab["device"], "LOW", name="pi-sweep",
                              team=lab["team"], max_seconds=5)
    theirs = UserClient.from_config(lab["student"]).create_work(
        str(v2_workload), lab["device"], "LOW", name="student-sweep")
    listed = ok(run(lab["student"], "list", "--team", lab["team"])).stdout
    assert "POSITION" in listed and "pi-sweep" in listed and "student-sweep" in listed
    as_json = json.loads(ok(run(lab["student"], "--json", "list", "--team",
                                lab["team"])).stdout)
    assert {(w["WorkId"], w["QueuePosition"]) for w in as_json} == {(mine, 1), (theirs, 2)}
    refused(run(lab["student"], "status", mine), 4, "no workload")
    refused(run(lab["outsider"], "list", "--team", lab["team"]), 4,
            f"no team {lab['team']} of yours")
