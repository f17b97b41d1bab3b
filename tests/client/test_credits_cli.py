"""``userclient credits request|requests|approve|deny|usage`` (a real subprocess) against
the real service: a scheduler asks with an estimate file attached, an admin approves
(fewer seconds) or denies; a second decision is exit 7 saying by whom; usage as a table,
``--json`` and CSV with a header row; refusals are one-line errors with the documented
exit codes (2 bad input, 3 not allowed, 4 no such thing, 6 on a stock service)."""
from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from queueservice.db import Database
from queueservice.facility import append_line
from tests.client.test_admin_cli import ok, run, write_config
from tests.client.test_team_cli import refused
from tests.conftest import QueueService, start_queue_service

NOV = 1_794_268_800_000  # 2026-11-10T00:00:00Z


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    started = start_queue_service(Path(tmp_path_factory.mktemp("credits-cli")))
    yield started
    started.stop()


@pytest.fixture
def lab(service: QueueService, tmp_path: Path) -> dict:
    """A team with a scheduler (pi) and a user (student), each with a config."""
    admin = write_config(tmp_path / "admin.conf", service, service.admin_key)
    people: dict = {"admin": admin, "team": f"qubits-{uuid.uuid4().hex[:6]}"}
    for who in ("pi", "student"):
        email = f"{who}-{uuid.uuid4().hex[:8]}@lab.test"
        made = json.loads(ok(run(admin, "--json", "add-user", email, "--name", who)).stdout)
        people[who] = write_config(tmp_path / f"{who}.conf", service, made["ApiKey"])
        people[who + "_email"], people[who + "_id"] = email, made["UserId"]
    ok(run(admin, "team", "create", people["team"], "--scheduler", people["pi_email"]))
    ok(run(people["pi"], "team", "add", people["team"], people["student_email"]))
    return people


def test_a_request_with_an_estimate_is_approved_for_less(lab, tmp_path):
    admin, pi, team = lab["admin"], lab["pi"], lab["team"]
    estimate = tmp_path / "rabi-estimate.json"
    estimate.write_text(json.dumps({"File": "rabi.qwl", "Submitted": False, "Seconds": 9.5}))
    asked = ok(run(pi, "credits", "request", team, "900", "--justification",
                   "Rabi scans for Q3", "--estimate", str(estimate)))
    assert f"900 device-seconds for team {team}, pending" in asked.stdout
    request_id = asked.stdout.split()[2].rstrip(":")

    listed = ok(run(admin, "credits", "requests", "--state", "pending", "--team", team))
    assert request_id in listed.stdout and "Rabi scans for Q3" in listed.stdout
    assert lab["pi_email"] in listed.stdout

    approved = ok(run(admin, "credits", "approve", request_id, "--seconds", "600"))
    assert f"approved: 600 device-seconds granted to team {team}" in approved.stdout
    again = refused(run(admin, "credits", "approve", request_id), 7, "approved already")
    assert "by " in again
    balance = json.loads(ok(run(pi, "--json", "credits", "balance", team)).stdout)
    assert balance["BalanceSeconds"] == 600.0
    seen = json.loads(ok(run(pi, "--json", "credits", "requests")).stdout)
    assert [(r["RequestId"], r["State"], r["GrantedSeconds"], r["HasEstimate"])
            for r in seen] == [(request_id, "approved", 600.0, True)]


def test_a_denied_request_says_why_and_who_may_do_what(lab, tmp_path):
    admin, pi, student, team = lab["admin"], lab["pi"], lab["student"], lab["team"]
    made = json.loads(ok(run(pi, "--json", "credits", "request", team, "50",
                             "--justification", "calibration")).stdout)
    refused(run(student, "credits", "request", team, "5", "--justification", "x"), 3,
            "only a scheduler")
    refused(run(pi, "credits", "approve", made["RequestId"]), 3, "only an admin")
    refused(run(admin, "credits", "deny", "no-such-request", "--note", "n"), 4,
            "no credit request")
    denied = ok(run(admin, "credits", "deny", made["RequestId"], "--note", "use the slot"))
    assert "denied: use the slot" in denied.stdout
    refused(run(admin, "credits", "approve", made["RequestId"]), 7, "denied already")
    assert ok(run(student, "credits", "requests")).stdout.strip() == "no credit requests"

    missing = run(pi, "credits", "request", team, "5", "--justification", "x", "--estimate",
                  str(tmp_path / "nope.json"))
    refused(missing, 2, "cannot read --estimate")
    (tmp_path / "bad.json").write_text("[1, 2]")
    refused(run(pi, "credits", "request", team, "5", "--justification", "x", "--estimate",
                str(tmp_path / "bad.json")), 2, "not a JSON object")
    for args in (["credits", "request", team, "0", "--justification", "x"],
                 ["credits", "request", team, "5"],
                 ["credits", "requests", "--state", "maybe"],
                 ["credits", "usage", "--by", "year"],
                 ["credits", "usage", "--json", "--csv"]):
        done = run(admin, *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)


def test_usage_as_a_table_json_and_csv(lab, service):
    team = lab["team"]
    team_id = json.loads(ok(run(lab["pi"], "--json", "team", "list")).stdout)[0]["TeamId"]
    database = Database(service.database_target)
    try:
        for user_id, seconds, kind in ((lab["student_id"], -12.5, "charge"),
                                       (lab["pi_id"], -100.0, "reservation")):
            with database.transaction() as conn:
                append_line(conn, team_id, kind, seconds, user_id, None, NOV)
    finally:
        database.close()

    shown = ok(run(lab["pi"], "credits", "usage", "--by", "user", "--team", team)).stdout
    header, *rows = shown.splitlines()
    assert header.split()[:4] == ["USER", "CHARGED", "REFUNDED", "SPENT"]
    assert rows[0].split()[0] == lab["pi_email"] and rows[-1].split()[0] == "TOTAL"
    assert "112.500" in rows[-1]
    as_json = json.loads(ok(run(lab["student"], "--json", "credits", "usage", "--from",
                                "2026-11", "--to", "2026-12")).stdout)
    assert [(r["Name"], r["Spent"]) for r in as_json["Rows"]] == [(team, 12.5)]
    as_csv = ok(run(lab["admin"], "credits", "usage", "--by", "month", "--team", team,
                    "--csv")).stdout
    table = list(csv.DictReader(as_csv.splitlines()))
    assert [(r["month"], float(r["Spent"]), float(r["Reservations"]), float(r["Total"]))
            for r in table] == [("2026-11", 12.5, 100.0, 112.5)]
    refused(run(lab["pi"], "credits", "usage", "--from", "yesterday"), 2, "ISO 8601")
    refused(run(lab["pi"], "credits", "usage", "--team", "no-such-team"), 4, "no team")


def test_a_stock_service_answers_not_supported(queue_service_factory, tmp_path):
    stock = queue_service_factory(stock_protocol=True)
    admin = write_config(tmp_path / "admin.conf", stock, stock.admin_key)
    for args in (["credits", "request", "t", "5", "--justification", "x"],
                 ["credits", "requests"], ["credits", "approve", "r"],
                 ["credits", "deny", "r", "--note", "n"], ["credits", "usage"]):
        refused(run(admin, *args), 6, "stock Cloud Queue")
