"""The health snapshot's outputs: the heartbeat's Health stays small whatever the reason's
length, and systemd's STATUS= line says state, current work and counts."""
import json

import pytest

from supervisor.snapshot import MAX_REASON_CHARS, health_summary, status_line

pytestmark = pytest.mark.device310


def _snap(reason="", current=None):
    return {"state": "ERROR" if reason else "BUSY", "reason": reason,
            "children": {n: {"state": "RUNNING", "restarts": 0, "pid": 1}
                         for n in ("downloader", "executor", "uploader")},
            "spool": {"incoming": 0, "ready": 1, "running": 1, "outgoing": 0, "done": 7},
            "current": current, "firmware": {"board": "zcu216-v2", "board_kind": "simulated",
                                             "fingerprint": "sha256:abc", "network": "private"},
            "counts": {"DONE": 5, "FAILED": 2, "CANCELLED": 0}}


def test_a_long_error_reason_is_cut_so_the_heartbeat_stays_small():
    summary = health_summary(_snap(reason="executor: " + "x" * 10000))
    assert len(summary["Reason"]) == MAX_REASON_CHARS and summary["Reason"].endswith("...")
    assert len(json.dumps(summary)) < 2048


def test_status_line_names_state_current_work_and_counts():
    line = status_line(_snap(current={"work_id": "w1", "programs_done": 2,
                                      "programs_total": 5, "seconds": 1.0}), draining=True)
    assert line.startswith("stopping; BUSY")
    assert "running w1 (2/5)" in line and "ready 1" in line and "done 5, failed 2" in line
