"""How userclient shows READY work a facility rule holds: WAITING with the rule, why and
until when (in tables, details and wait lines), while the wire keeps READY; READY work
without ``Waiting`` (any stock service) shows as before."""
from __future__ import annotations

import io

from cloudqueue.models import Workload
from userclient.display import (WaitDisplay, progress_line, shown_status, workload_details,
                                workloads_table)

HELD = {"Rule": "maintenance", "Message": "the device is in maintenance now (cryostat) "
        "until 2026-12-02T10:00:00.000Z", "Until": "2026-12-02T10:00:00.000Z"}


def work(**fields) -> Workload:
    return Workload.from_json({"WorkId": "w1", "WorkStatus": "READY", "DeviceId": "d1",
                               "Priority": "MEDIUM", "QueuePosition": 1, **fields})


def test_held_work_shows_as_waiting_with_why_and_until_when():
    held = work(Waiting=HELD)
    assert held.WorkStatus == "READY" and shown_status(held) == "WAITING"
    assert "WAITING" in workloads_table([held])
    details = workload_details(held)
    assert "WAITING" in details and "maintenance: the device is in maintenance" in details
    assert "(until 2026-12-02T10:00:00.000Z)" in details
    line = progress_line(held, 3)
    assert line.startswith("WAITING") and "cryostat" in line


def test_ready_work_without_a_rule_shows_as_before():
    plain = work()
    assert shown_status(plain) == "READY" and progress_line(plain, 3).startswith("READY")
    assert "WAITING" not in workload_details(plain)
    behind = work(QueueReason="behind w0: earlier in line")
    assert shown_status(behind) == "READY"
    assert "behind w0" in workload_details(behind)


def test_waiting_ends_and_the_wait_log_says_so():
    out = io.StringIO()
    display = WaitDisplay(out, tty=False)
    display.update(work(Waiting=HELD), 1)
    display.update(work(Waiting=HELD), 2)  # unchanged: no new line
    display.update(work(), 3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "WAITING" in lines[0] and " READY " in lines[1]
