"""Credit requests over raw HTTP against the real service, on each engine: a team's
scheduler asks (with a justification and, optionally, an estimate), an admin approves
(the grant line lands in the ledger, naming the request, exactly once even when admins
approve at once) or denies; a decided request cannot be decided again (409 says by whom
and when); who may ask, see and decide; bad input is a 400 that says what to do."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.server.api import World, assert_error, new_team

ESTIMATE = {"File": "rabi.qwl", "Submitted": False, "Programs": 3, "Seconds": 12.5}




def ask(api, team_id: str, seconds: float = 600, justification: str = "Rabi scans",
        **extra) -> dict:
    resp = api.post("/credits/requests", json={"Team": team_id, "Seconds": seconds,
                                               "Justification": justification, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()


def ledger(world: World, team_id: str) -> list[dict]:
    return world.admin.get(f"/teams/{team_id}/ledger").json()["Lines"]


def test_a_scheduler_asks_and_an_admin_approves_once(world: World, team: dict):
    made = ask(team["pi"], team["id"], 600, "Rabi scans for Q3", Estimate=ESTIMATE)
    assert (made["State"], made["Seconds"], made["Name"], made["UserId"]) == \
        ("pending", 600.0, team["name"], team["pi_id"])
    assert made["Estimate"] == ESTIMATE and made["HasEstimate"] is True
    assert made["DecidedBy"] is None and made["GrantedSeconds"] is None
    assert ledger(world, team["id"]) == []

    approved = world.admin.post(f"/credits/requests/{made['RequestId']}/approve")
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["State"], body["GrantedSeconds"]) == ("approved", 600.0)
    assert body["DecidedBy"] == world.service.admin_email and body["DecidedAt"].endswith("Z")
    lines = ledger(world, team["id"])
    assert [(x["Kind"], x["Seconds"], x["Note"], x["EntryId"]) for x in lines] == \
        [("grant", 600.0, f"credit request {made['RequestId']}", body["EntryId"])]

    again = world.admin.post(f"/credits/requests/{made['RequestId']}/approve")
    message = assert_error(again, 409, "already_decided")["ErrorMessage"]
    assert f"was approved already, by {world.service.admin_email} at {body['DecidedAt']}" \
        in message
    denied = world.admin.post(f"/credits/requests/{made['RequestId']}/deny",
                              json={"Note": "changed my mind"})
    assert "approved already" in assert_error(denied, 409, "already_decided")["ErrorMessage"]
    assert len(ledger(world, team["id"])) == 1


def test_an_admin_grants_less_than_asked_or_denies_with_a_note(world: World, team: dict):
    first = ask(team["pi"], team["id"], 1000)
    more = world.admin.post(f"/credits/requests/{first['RequestId']}/approve",
                            json={"Seconds": 1001})
    assert "credits grant" in assert_error(more, 400, "bad_request")["ErrorMessage"]
    less = world.admin.post(f"/credits/requests/{first['RequestId']}/approve",
                            json={"Seconds": 250})
    assert less.status_code == 200, less.text
    assert (less.json()["Seconds"], less.json()["GrantedSeconds"]) == (1000.0, 250.0)

    second = ask(team["pi"], team["id"], 5000, "a whole month")
    bare = world.admin.post(f"/credits/requests/{second['RequestId']}/deny", json={})
    assert "Note" in assert_error(bare, 400)["ErrorMessage"]
    denied = world.admin.post(f"/credits/requests/{second['RequestId']}/deny",
                              json={"Note": "ask for a week first"})
    assert denied.status_code == 200, denied.text
    assert (denied.json()["State"], denied.json()["DecisionNote"],
            denied.json()["GrantedSeconds"]) == ("denied", "ask for a week first", None)
    late = world.admin.post(f"/credits/requests/{second['RequestId']}/approve")
    assert "was denied already" in assert_error(late, 409, "already_decided")["ErrorMessage"]
    assert [x["Seconds"] for x in ledger(world, team["id"])] == [250.0]
    balance = team["pi"].get(f"/teams/{team['id']}/balance").json()["BalanceSeconds"]
    assert balance == 250.0


def test_admins_approving_at_once_grant_exactly_once(world: World, team: dict):
    made = [ask(team["pi"], team["id"], 100 + n) for n in range(3)]
    with ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(
            lambda r: world.admin.post(f"/credits/requests/{r['RequestId']}/approve"),
            [r for r in made for _ in range(3)]))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 3 + [409] * 6, [a.text for a in answers]
    lines = ledger(world, team["id"])
    assert sorted(x["Note"] for x in lines) == sorted(f"credit request {r['RequestId']}"
                                                      for r in made)
    assert sum(x["Seconds"] for x in lines) == 100 + 101 + 102


def test_who_may_ask_see_and_decide(world: World, team: dict):
    student = team["student"].post("/credits/requests", json={
        "Team": team["id"], "Seconds": 10, "Justification": "more"})
    assert "ask one of its schedulers" in assert_error(student, 403)["ErrorMessage"]
    outsider = team["outsider"].post("/credits/requests", json={
        "Team": team["id"], "Seconds": 10, "Justification": "more"})
    assert "team list" in assert_error(outsider, 404, "not_found")["ErrorMessage"]
    admin = world.admin.post("/credits/requests", json={
        "Team": team["id"], "Seconds": 10, "Justification": "more"})
    assert "credits grant" in assert_error(admin, 403)["ErrorMessage"]

    made = ask(team["pi"], team["id"], 42)
    refused = team["pi"].post(f"/credits/requests/{made['RequestId']}/approve")
    assert "only an admin" in assert_error(refused, 403, "forbidden")["ErrorMessage"]

    other = new_team(world, scheduler=team["outsider_id"])
    theirs = ask(team["outsider"], other["TeamId"], 7)
    mine = [r["RequestId"] for r in team["pi"].get("/credits/requests").json()]
    assert mine == [made["RequestId"]]
    assert team["student"].get("/credits/requests").json() == []
    hidden = team["student"].get("/credits/requests", params={"Team": team["id"]})
    assert_error(hidden, 403, "forbidden")
    every = {r["RequestId"] for r in world.admin.get("/credits/requests").json()}
    assert {made["RequestId"], theirs["RequestId"]} <= every
    one = team["pi"].get(f"/credits/requests/{made['RequestId']}")
    assert one.status_code == 200 and one.json()["Estimate"] is None
    assert_error(team["pi"].get(f"/credits/requests/{theirs['RequestId']}"), 404, "not_found")
    assert_error(team["student"].get(f"/credits/requests/{made['RequestId']}"), 404)


def test_the_list_narrows_by_state_and_team_newest_first(world: World, team: dict):
    made = [ask(team["pi"], team["id"], n) for n in (1, 2, 3)]
    world.admin.post(f"/credits/requests/{made[1]['RequestId']}/deny", json={"Note": "no"})
    listed = team["pi"].get("/credits/requests", params={"Team": team["name"]}).json()
    assert [r["Seconds"] for r in listed] == [3.0, 2.0, 1.0]
    assert "Estimate" not in listed[0]
    pending = world.admin.get("/credits/requests",
                              params={"Team": team["id"], "State": "pending"}).json()
    assert [r["Seconds"] for r in pending] == [3.0, 1.0]
    bad = world.admin.get("/credits/requests", params={"State": "maybe"})
    assert "pending, approved, denied" in assert_error(bad, 400)["ErrorMessage"]


@pytest.mark.parametrize("body, words", [
    ({"Seconds": 10, "Justification": "x"}, "Team is required"),
    ({"Team": "T", "Seconds": 0, "Justification": "x"}, "more than 0"),
    ({"Team": "T", "Seconds": 2e9, "Justification": "x"}, "between 0 and"),
    ({"Team": "T", "Seconds": 10}, "Justification is required"),
    ({"Team": "T", "Seconds": 10, "Justification": "  "}, "say what the credits are for"),
    ({"Team": "T", "Seconds": 10, "Justification": "x", "Estimate": [1]}, "an object"),
    ({"Team": "T", "Seconds": 10, "Justification": "x", "Estimate": {"a": "b" * 40_000}},
     "larger than 32 KiB"),
])
def test_bad_requests_say_what_is_wrong(world: World, team: dict, body: dict, words: str):
    body = {k: team["id"] if v == "T" else v for k, v in body.items()}
    message = assert_error(team["pi"].post("/credits/requests", json=body), 400)
    assert words in message["ErrorMessage"]


def test_an_unknown_request_is_404(world: World):
    for verb in ("approve", "deny"):
        missing = world.admin.post(f"/credits/requests/nope/{verb}", json={"Note": "n"})
        assert "credits requests" in assert_error(missing, 404, "not_found")["ErrorMessage"]
