"""``userclient team`` and ``userclient credits`` (a real subprocess) against the real
service: create, add, role, list, default, remove; grant and balance (with its ledger);
``--json``; the exit codes cli.py documents for refusals (3 not allowed, 4 no such team,
7 conflict, 2 bad input, 6 on a stock service), each a one-line error, no traceback."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.client.test_admin_cli import ok, run, write_config
from tests.conftest import QueueService, start_queue_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    started = start_queue_service(Path(tmp_path_factory.mktemp("team-cli")))
    yield started
    started.stop()


def refused(result, code: int, words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert words in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.fixture
def lab(service: QueueService, tmp_path: Path) -> dict:
    """The admin's config and two users' (pi and student), each an e-mail and a config."""
    admin = write_config(tmp_path / "admin.conf", service, service.admin_key)
    people = {"admin": admin}
    for who in ("pi", "student"):
        email = f"{who}-{uuid.uuid4().hex[:8]}@lab.test"
        made = json.loads(ok(run(admin, "--json", "add-user", email, "--name", who)).stdout)
        people[who] = write_config(tmp_path / f"{who}.conf", service, made["ApiKey"])
        people[who + "_email"] = email
    people["team"] = f"qubits-{uuid.uuid4().hex[:6]}"
    return people


def test_an_admin_creates_a_team_a_scheduler_adds_and_promotes(lab):
    admin, pi, student, team = lab["admin"], lab["pi"], lab["student"], lab["team"]
    made = ok(run(admin, "team", "create", team, "--scheduler", lab["pi_email"]))
    assert f"team {team} created" in made.stdout and lab["pi_email"] in made.stdout
    refused(run(pi, "team", "create", "another"), 3, "only an admin")
    refused(run(admin, "team", "create", team), 7, "choose another name")

    added = ok(run(pi, "team", "add", team, lab["student_email"]))
    assert f"{lab['student_email']} is user (their default team)" in added.stdout
    refused(run(student, "team", "add", team, lab["pi_email"], "--role", "user"), 3,
            "only a scheduler")
    refused(run(pi, "team", "add", team, lab["student_email"]), 7, "team role")

    listed = ok(run(student, "team", "list")).stdout
    assert team in listed and lab["pi_email"] in listed and "scheduler" in listed
    as_json = json.loads(ok(run(student, "team", "list", "--json")).stdout)
    assert [t["Name"] for t in as_json] == [team]
    assert {m["Email"]: m["Role"] for m in as_json[0]["Members"]} == {
        lab["pi_email"]: "scheduler", lab["student_email"]: "user"}

    promoted = ok(run(pi, "team", "role", team, lab["student_email"], "scheduler"))
    assert f"{lab['student_email']} is scheduler" in promoted.stdout
    ok(run(student, "team", "role", team, lab["pi_email"], "user"))
    refused(run(student, "team", "role", team, lab["student_email"], "user"), 7,
            "last scheduler")
    removed = ok(run(student, "team", "remove", team, lab["pi_email"]))
    assert "no longer a member" in removed.stdout
    assert ok(run(pi, "team", "list")).stdout.strip() == "no teams"


def test_credits_are_granted_by_admins_and_seen_by_schedulers(lab):
    admin, pi, student, team = lab["admin"], lab["pi"], lab["student"], lab["team"]
    ok(run(admin, "team", "create", team, "--scheduler", lab["pi_email"]))
    ok(run(pi, "team", "add", team, lab["student_email"], "--role", "user"))

    granted = ok(run(admin, "credits", "grant", team, "3600", "--note", "2026 allocation"))
    assert "granted 3600 device-seconds" in granted.stdout and "now 3600" in granted.stdout
    line = json.loads(ok(run(admin, "--json", "credits", "grant", team, "0.5", "--note",
                             "top-up")).stdout)
    assert (line["Kind"], line["Seconds"], line["BalanceSeconds"]) == ("grant", 0.5, 3600.5)
    refused(run(pi, "credits", "grant", team, "100", "--note", "more please"), 3,
            "only an admin")

    shown = ok(run(pi, "credits", "balance", team)).stdout
    assert f"team {team}: 3600.5 device-seconds (2 ledger lines" in shown
    ledger = ok(run(pi, "credits", "balance", team, "--ledger")).stdout
    assert "2026 allocation" in ledger and "+0.500" in ledger and "3600.500" in ledger
    as_json = json.loads(ok(run(pi, "credits", "balance", team, "--ledger", "--json")).stdout)
    assert [x["BalanceAfter"] for x in as_json["Lines"]] == [3600.0, 3600.5]

    refused(run(student, "credits", "balance", team), 3, "only a scheduler")
    stranger = run(student, "--json", "credits", "balance", "no-such-team")
    refused(stranger, 4, "no team no-such-team")
    assert json.loads(stranger.stdout)["ExitCode"] == 4


def test_a_member_chooses_their_default_team(lab, service):
    admin, student = lab["admin"], lab["student"]
    other = lab["team"] + "-b"
    for name in (lab["team"], other):
        ok(run(admin, "team", "create", name))
        ok(run(admin, "team", "add", name, lab["student_email"]))
    refused(run(student, "team", "default", other), 2, "give --user")
    chosen = ok(run(student, "team", "default", other, "--user", lab["student_email"]))
    assert "(their default team)" in chosen.stdout
    teams = json.loads(ok(run(student, "--json", "team", "list")).stdout)
    assert {t["Name"]: t["Members"][0]["IsDefault"] for t in teams} == {
        lab["team"]: False, other: True}


def test_bad_arguments_are_usage_errors(lab):
    admin = lab["admin"]
    for args in (["credits", "grant", "t", "-5", "--note", "n"],
                 ["credits", "grant", "t", "lots", "--note", "n"],
                 ["credits", "grant", "t", "5"],
                 ["team", "add", "t", "u", "--role", "pi"],
                 ["team"]):
        done = run(admin, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
    refused(run(admin, "team", "create", "   "), 2, "non-empty")


def test_a_stock_service_answers_not_supported(queue_service_factory, tmp_path):
    stock = queue_service_factory(stock_protocol=True)
    admin = write_config(tmp_path / "admin.conf", stock, stock.admin_key)
    for args in (["team", "create", "t"], ["team", "add", "t", "u"], ["team", "list"],
                 ["team", "role", "t", "u", "user"], ["credits", "grant", "t", "5", "--note",
                                                      "n"], ["credits", "balance", "t"]):
        refused(run(admin, *args), 6, "stock Cloud Queue")
