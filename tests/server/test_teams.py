"""Teams, roles and the credit ledger over raw HTTP against the real service, on each
engine: only admins create teams and grant; a team's schedulers (and admins) see its
balance and ledger, its ``user`` members are refused them (IQM's rule), anyone else is
told there is no such team; the ledger sums; bad input is a 400 that says what to do."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.server.api import Api, World, assert_error, grant, new_team


def test_only_admins_create_teams(world: World):
    someone, someone_id = world.user()
    refused = someone.post("/teams", json={"Name": f"t-{uuid.uuid4().hex[:8]}"})
    assert "only an admin" in assert_error(refused, 403, "forbidden")["ErrorMessage"]
    made = new_team(world, scheduler=someone_id)
    assert made["CreatedBy"] and made["CreatedAt"].endswith("Z")
    assert [(m["UserId"], m["Role"], m["IsDefault"]) for m in made["Members"]] == \
        [(someone_id, "scheduler", True)]
    again = world.admin.post("/teams", json={"Name": made["Name"]})
    assert "choose another name" in assert_error(again, 409, "team_exists")["ErrorMessage"]


def test_members_see_their_teams_and_outsiders_see_none(world: World, team: dict):
    for api in (team["pi"], team["student"]):
        listed = api.get("/teams")
        assert listed.status_code == 200, listed.text
        assert [t["TeamId"] for t in listed.json()] == [team["id"]]
        roles = {m["UserId"]: m["Role"] for m in listed.json()[0]["Members"]}
        assert roles == {team["pi_id"]: "scheduler", team["student_id"]: "user"}
    assert team["outsider"].get("/teams").json() == []
    assert team["id"] in {t["TeamId"] for t in world.admin.get("/teams").json()}
    hidden = team["outsider"].get(f"/teams/{team['id']}/balance")
    assert "team list" in assert_error(hidden, 404, "not_found")["ErrorMessage"]
    # nor do they learn who exists through the team's member paths
    for user in ("nobody@lab.test", team["pi_id"]):
        probe = team["outsider"].put(f"/teams/{team['id']}/members/{user}",
                                     json={"Role": "user"})
        assert f"no team {team['id']} of yours" in assert_error(probe, 404)["ErrorMessage"]


def test_a_user_member_cannot_see_the_balance_or_ledger_a_scheduler_can(world: World,
                                                                         team: dict):
    for path in ("balance", "ledger"):
        refused = team["student"].get(f"/teams/{team['id']}/{path}")
        message = assert_error(refused, 403, "forbidden")["ErrorMessage"]
        assert "only a scheduler" in message and "ask one of its schedulers" in message
    seen = team["pi"].get(f"/teams/{team['id']}/balance")
    assert seen.status_code == 200, seen.text
    assert seen.json() == {"TeamId": team["id"], "Name": team["name"],
                           "BalanceSeconds": 0.0, "Lines": 0}
    by_name = world.admin.get(f"/teams/{team['name']}/balance")
    assert by_name.status_code == 200 and by_name.json()["TeamId"] == team["id"]


def test_grants_are_admins_only_and_the_ledger_sums_line_by_line(world: World, team: dict):
    refused = team["pi"].post(f"/teams/{team['id']}/grants",
                              json={"Seconds": 100, "Note": "please"})
    assert "only an admin" in assert_error(refused, 403, "forbidden")["ErrorMessage"]
    first = grant(world, team["id"], 3600, "2026 allocation")
    assert first["Kind"] == "grant" and first["Seconds"] == 3600.0
    assert first["BalanceSeconds"] == 3600.0 and first["Note"] == "2026 allocation"
    second = grant(world, team["id"], 0.5, "top-up")
    assert second["BalanceSeconds"] == 3600.5 and second["EntryId"] > first["EntryId"]
    balance = team["pi"].get(f"/teams/{team['id']}/balance").json()
    assert (balance["BalanceSeconds"], balance["Lines"]) == (3600.5, 2)
    ledger = team["pi"].get(f"/teams/{team['id']}/ledger").json()
    assert [(x["Kind"], x["Seconds"], x["BalanceAfter"], x["Note"]) for x in ledger["Lines"]] \
        == [("grant", 3600.0, 3600.0, "2026 allocation"), ("grant", 0.5, 3600.5, "top-up")]
    assert ledger["BalanceSeconds"] == 3600.5
    assert all(x["At"].endswith("Z") and x["WorkId"] is None for x in ledger["Lines"])
    admin_id = ledger["Lines"][0]["UserId"]
    assert admin_id not in (team["pi_id"], team["student_id"])


def test_grants_sent_at_once_all_land_and_the_ledger_still_sums(world: World, team: dict):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: world.admin.post(
            f"/teams/{team['id']}/grants", json={"Seconds": n, "Note": f"grant {n}"}),
            range(1, 25)))
    assert [a.status_code for a in answers] == [201] * 24
    assert sorted(a.json()["Note"] for a in answers) == sorted(f"grant {n}" for n in
                                                               range(1, 25))
    lines = world.admin.get(f"/teams/{team['id']}/ledger").json()["Lines"]
    running = 0.0
    for line in lines:
        running += line["Seconds"]
        assert line["BalanceAfter"] == running
    assert running == sum(range(1, 25)) == \
        world.admin.get(f"/teams/{team['id']}/balance").json()["BalanceSeconds"]


def test_schedulers_manage_members_users_do_not(world: World, team: dict):
    newcomer, newcomer_id = world.user()
    refused = team["student"].post(f"/teams/{team['id']}/members",
                                   json={"User": newcomer_id, "Role": "user"})
    assert_error(refused, 403, "forbidden")
    hidden = team["outsider"].post(f"/teams/{team['id']}/members",
                                   json={"User": newcomer_id, "Role": "user"})
    assert_error(hidden, 404, "not_found")
    added = team["pi"].post(f"/teams/{team['id']}/members",
                            json={"User": newcomer_id, "Role": "scheduler"})
    assert added.status_code == 201, added.text
    twice = team["pi"].post(f"/teams/{team['id']}/members",
                            json={"User": newcomer_id, "Role": "user"})
    assert "team role" in assert_error(twice, 409, "member_exists")["ErrorMessage"]
    # the newcomer, a scheduler now, sees the balance; made a user, no longer
    assert newcomer.get(f"/teams/{team['id']}/balance").status_code == 200
    demoted = team["pi"].put(f"/teams/{team['id']}/members/{newcomer_id}",
                             json={"Role": "user"})
    assert demoted.status_code == 200, demoted.text
    assert_error(newcomer.get(f"/teams/{team['id']}/balance"), 403, "forbidden")
    removed = team["pi"].call("DELETE", f"/teams/{team['id']}/members/{newcomer_id}")
    assert removed.status_code == 200, removed.text
    assert newcomer_id not in {m["UserId"] for m in removed.json()["Members"]}
    assert newcomer.get("/teams").json() == []
    gone = team["pi"].call("DELETE", f"/teams/{team['id']}/members/{newcomer_id}")
    assert_error(gone, 404, "not_found")


def test_the_last_scheduler_stays_one(world: World, team: dict):
    path = f"/teams/{team['id']}/members/{team['pi_id']}"
    demote = world.admin.put(path, json={"Role": "user"})
    message = assert_error(demote, 409, "last_scheduler")["ErrorMessage"]
    assert "make another member scheduler first" in message
    assert_error(world.admin.call("DELETE", path), 409, "last_scheduler")
    promoted = team["pi"].put(f"/teams/{team['id']}/members/{team['student_id']}",
                              json={"Role": "scheduler"})
    assert promoted.status_code == 200, promoted.text
    assert team["pi"].put(path, json={"Role": "user"}).status_code == 200


def test_the_first_team_is_the_default_and_a_member_may_choose_another(world: World,
                                                                        team: dict):
    other = new_team(world)
    added = world.admin.post(f"/teams/{other['TeamId']}/members",
                             json={"User": team["student_id"], "Role": "user"})
    assert added.status_code == 201, added.text

    def defaults() -> dict:
        return {t["TeamId"]: next(m["IsDefault"] for m in t["Members"]
                                  if m["UserId"] == team["student_id"])
                for t in team["student"].get("/teams").json()}

    assert defaults() == {team["id"]: True, other["TeamId"]: False}
    chosen = team["student"].put(f"/teams/{other['TeamId']}/members/{team['student_id']}",
                                 json={"IsDefault": True})
    assert chosen.status_code == 200, chosen.text
    assert defaults() == {team["id"]: False, other["TeamId"]: True}
    # a user member may choose their default, not their role
    own_role = team["student"].put(f"/teams/{other['TeamId']}/members/{team['student_id']}",
                                   json={"Role": "scheduler"})
    assert_error(own_role, 403, "forbidden")
    left = world.admin.call("DELETE", f"/teams/{other['TeamId']}/members/{team['student_id']}")
    assert left.status_code == 200, left.text
    assert defaults() == {team["id"]: True}


@pytest.mark.parametrize("body, words", [
    ({"Seconds": 0, "Note": "n"}, "more than 0"),
    ({"Seconds": -5, "Note": "n"}, "between 0"),
    ({"Seconds": "lots", "Note": "n"}, "must be an integer or a number"),
    ({"Seconds": True, "Note": "n"}, "must be an integer or a number"),
    ({"Seconds": 1e12, "Note": "n"}, "between 0"),
    ({"Seconds": 10}, "Note is required"),
    ({"Seconds": 10, "Note": "  "}, "non-empty"),
])
def test_a_bad_grant_says_what_was_wrong(world: World, team: dict, body: dict, words: str):
    resp = world.admin.post(f"/teams/{team['id']}/grants", json=body)
    assert words in assert_error(resp, 400, "bad_request")["ErrorMessage"]
    assert world.admin.get(f"/teams/{team['id']}/balance").json()["Lines"] == 0


def test_bad_team_and_member_input_says_what_was_wrong(world: World, team: dict):
    admin = world.admin
    assert "Name is required" in assert_error(admin.post("/teams", json={}), 400)["ErrorMessage"]
    assert_error(admin.post("/teams", json={"Name": ""}), 400, "bad_request")
    slash = admin.post("/teams", json={"Name": "a/b"})
    assert "cannot contain '/'" in assert_error(slash, 400, "bad_request")["ErrorMessage"]
    assert_error(admin.post("/teams", data=b"[1]"), 400, "invalid_json")
    nobody = admin.post("/teams", json={"Name": "x" + uuid.uuid4().hex, "Scheduler": "no@x"})
    assert "userclient users" in assert_error(nobody, 404, "not_found")["ErrorMessage"]
    members = f"/teams/{team['id']}/members"
    bad_role = admin.post(members, json={"User": team["outsider_id"], "Role": "pi"})
    assert "scheduler, user" in assert_error(bad_role, 400, "bad_request")["ErrorMessage"]
    empty = admin.put(f"{members}/{team['student_id']}", json={})
    assert "give Role" in assert_error(empty, 400, "bad_request")["ErrorMessage"]
    not_in = admin.put(f"{members}/{team['outsider_id']}", json={"Role": "user"})
    assert "team add" in assert_error(not_in, 404, "not_found")["ErrorMessage"]
    assert_error(admin.get("/teams/no-such-team/ledger"), 404, "not_found")
    assert_error(admin.post("/teams/no-such-team/grants", json={"Seconds": 1, "Note": "n"}),
                 404, "not_found")


def test_devices_are_refused_team_paths(world: World):
    device = world.device()
    assert_error(device.api.get("/teams"), 403, "forbidden")
    assert_error(Api(world.service.url).get("/teams"), 401)
