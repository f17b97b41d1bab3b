"""``userclient session open|show|list|close`` and ``submit --session`` (a real subprocess)
against the real service: the texts and ``--json``; the exit codes cli.py documents for
refusals (7: the device has an open session already, or the session is closed; 4: no such
session of yours; 2: bad arguments; 6: a stock service), each a one-line error."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.client.test_admin_cli import ok, run, write_config
from tests.client.test_team_cli import refused
from tests.conftest import QueueService, start_queue_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    started = start_queue_service(Path(tmp_path_factory.mktemp("session-cli")))
    yield started
    started.stop()


@pytest.fixture
def lab(service: QueueService, tmp_path: Path) -> dict:
    """The admin's config, two users' (ada, bob), a device, and a workload file."""
    admin = write_config(tmp_path / "admin.conf", service, service.admin_key)
    people: dict = {"admin": admin}
    for who in ("ada", "bob"):
        made = json.loads(ok(run(admin, "--json", "add-user",
                                 f"{who}-{uuid.uuid4().hex[:8]}@lab.test", "--name",
                                 who)).stdout)
        people[who] = write_config(tmp_path / f"{who}.conf", service, made["ApiKey"])
    device = json.loads(ok(run(admin, "--json", "add-device", "board", "--config-out",
                               str(tmp_path / "board.conf"), "--credentials-out",
                               str(tmp_path / "board.creds"))).stdout)
    people["device"] = device["DeviceId"]
    people["file"] = tmp_path / "sweep.json.gz"
    people["file"].write_bytes(b"a workload file")
    return people


def test_open_submit_show_list_and_close_a_session(lab):
    ada, bob, device = lab["ada"], lab["bob"], lab["device"]
    opened = ok(run(ada, "session", "open", device, "--max-minutes", "20",
                    "--idle-minutes", "2")).stdout
    assert f"on device {device}: open" in opened and "at most 20 minutes" in opened
    assert "after 2 idle minutes" in opened and "userclient submit FILE --session" in opened
    listed = json.loads(ok(run(ada, "--json", "session", "list")).stdout)
    [session] = listed
    sid = session["SessionId"]
    assert (session["State"], session["MaxMinutes"], session["IdleMinutes"]) == \
        ("open", 20, 2)

    second = run(bob, "--json", "session", "open", device)
    refused(second, 7, "has an open session already")
    assert json.loads(second.stdout)["ErrorKind"] == "session_open"

    work_id = ok(run(ada, "submit", str(lab["file"]), "--session", sid, "--force"))
    work_id = work_id.stdout.strip()
    shown = json.loads(ok(run(ada, "--json", "status", work_id)).stdout)
    assert shown["DeviceId"] == device and shown["WorkStatus"] == "READY"
    assert json.loads(ok(run(ada, "--json", "session", "show", sid)).stdout)["Workloads"] == 1
    table = ok(run(ada, "session", "list", "--device", device)).stdout
    assert sid in table and "open" in table and "SESSION ID" in table

    closed = ok(run(ada, "session", "close", sid)).stdout
    assert "closed at" in closed and "closed by hand" in closed and "held the device" in closed
    again = json.loads(ok(run(ada, "--json", "session", "close", sid)).stdout)
    assert (again["State"], again["CloseReason"]) == ("closed", "closed")
    cancelled = json.loads(run(ada, "--json", "status", work_id).stdout)
    assert (cancelled["WorkStatus"], cancelled["ErrorKind"]) == ("CANCELLED", "session_closed")
    refused(run(ada, "submit", str(lab["file"]), "--session", sid, "--force"), 7,
            "open a new one")
    assert ok(run(ada, "session", "list", "--state", "open")).stdout.strip() == "no sessions"
    assert sid in ok(run(ada, "session", "list", "--state", "closed")).stdout


def test_sessions_of_others_are_not_found(lab):
    sid = json.loads(ok(run(lab["ada"], "--json", "session", "open", lab["device"])).stdout)[
        "SessionId"]
    refused(run(lab["bob"], "session", "show", sid), 4, f"no session {sid} of yours")
    refused(run(lab["bob"], "session", "close", sid), 4, "userclient session list")
    refused(run(lab["bob"], "submit", str(lab["file"]), "--session", sid, "--force"), 4,
            "of yours")
    refused(run(lab["ada"], "session", "open", "no-such-device"), 4, "no device")
    ok(run(lab["admin"], "session", "close", sid))       # an admin closes anyone's


def test_bad_arguments_are_usage_errors(lab):
    for args in (["session", "open", lab["device"], "--max-minutes", "0"],
                 ["session", "open", lab["device"], "--idle-minutes", "soon"],
                 ["session", "list", "--state", "sleeping"],
                 ["session", "close"],
                 ["session"]):
        done = run(lab["ada"], *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
    refused(run(lab["ada"], "session", "open", lab["device"], "--max-minutes", "600"), 2,
            "MaxMinutes must be between 0 and 480")
    refused(run(lab["ada"], "session", "open", lab["device"], "--max-minutes", "5",
                "--idle-minutes", "6"), 2, "at most MaxMinutes (5)")


def test_a_stock_service_answers_not_supported(queue_service_factory, tmp_path):
    stock = queue_service_factory(stock_protocol=True)
    admin = write_config(tmp_path / "admin.conf", stock, stock.admin_key)
    for args in (["session", "open", "d"], ["session", "list"], ["session", "show", "s"],
                 ["session", "close", "s"],
                 ["submit", str(admin), "--device", "d", "--session", "s", "--force"]):
        refused(run(admin, *args), 6, "stock Cloud Queue")
