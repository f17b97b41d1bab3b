"""Dispatch's deadline logic, direct: a fake executor child (no process), a real spool on
disk, and the clock passed in. The executor stops itself at the run's deadline; the
supervisor's SIGTERM comes only at deadline + margin, once, and SIGKILL is the child's
grace later (``Child.terminate``)."""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import pytest

from boardcore.limits import RunLimits
from boardcore.settings import BoardSettings
from boardcore.spool import WORKLOAD, Spool, WorkMeta
from supervisor.dispatch import Dispatcher
from supervisor.policy import ChildStatus

pytestmark = pytest.mark.device310


@dataclass
class FakeChild:
    """What the dispatcher uses of ``supervisor.children.Child``; records the signals."""
    name: str
    status: ChildStatus = ChildStatus.RUNNING
    identity: Optional[bytes] = b"fake-1"
    killed_for: Optional[str] = None
    running: bool = True
    terminations: List[Tuple[float, str, float]] = field(default_factory=list)

    def alive(self) -> bool:
        return self.running

    def terminate(self, now: float, reason: str, grace: float) -> None:
        self.terminations.append((now, reason, grace))
        if self.killed_for is None:
            self.killed_for = reason


@pytest.fixture
def setup(tmp_path):
    settings = BoardSettings(spool=tmp_path, deadline_seconds=100, deadline_margin_seconds=10,
                             grace_seconds=5)
    spool = Spool(tmp_path, min_free_bytes=0).ensure()
    folder = spool.path("ready", "w1")
    folder.mkdir()
    (folder / WORKLOAD).write_bytes(b"gz")
    spool.write_meta("ready", WorkMeta("w1", received_at=1.0))
    children = {name: FakeChild(name) for name in ("downloader", "executor", "uploader")}
    sent = []
    work = Dispatcher(settings, spool, children,
                      lambda child, kind, **fields: sent.append((child, kind, fields)))
    work.schedule(1000.0)
    run = next(fields for child, kind, fields in sent if kind == "run")
    return work, spool, children["executor"], run


def _filed(spool):
    return spool.read_meta("outgoing", "w1")


def test_the_run_message_carries_the_typed_limits(setup):
    work, spool, ex, run = setup
    assert RunLimits.from_message(run["limits"]) == RunLimits(
        deadline_seconds=100, max_workload_bytes=100 * 2**20, max_result_bytes=1024 * 2**20)


def test_no_sigterm_before_the_deadline_plus_margin_then_one(setup):
    work, spool, ex, run = setup
    work.enforce_deadline(1000.0 + 100)       # the executor's own deadline: its turn
    work.enforce_deadline(1000.0 + 109.99)
    assert ex.terminations == []
    work.enforce_deadline(1000.0 + 110)
    assert ex.terminations == [(1110.0, "deadline", 5)]
    work.enforce_deadline(1000.0 + 111)       # SIGKILL is the child's escalation, not a re-send
    assert len(ex.terminations) == 1


def test_the_executor_s_own_deadline_answer_is_filed_as_it_says(setup):
    work, spool, ex, run = setup
    work.outcome({"re": run["id"], "work_id": "w1", "status": "FAILED", "error_kind": "deadline",
                  "error_message": "stopped at its deadline of 100 s after 2 of 5 programs",
                  "programs_done": 2, "programs_total": 5, "seconds": 101.0,
                  "has_results": True}, 1101.0)
    meta = _filed(spool)
    assert (meta.outcome, meta.error_kind, meta.programs_done, meta.has_results) == \
        ("FAILED", "deadline", 2, True)
    assert meta.error_message.startswith("stopped at its deadline of 100 s")
    work.enforce_deadline(1000.0 + 200)
    assert ex.terminations == []  # nothing is running any more


def test_an_executor_killed_at_the_backstop_is_filed_as_past_its_deadline(setup):
    work, spool, ex, run = setup
    work.progress({"work_id": "w1", "done": 1, "total": 3})
    work.enforce_deadline(1110.0)
    ex.running = False
    work.executor_died(ex, -9, 1115.0)
    meta = _filed(spool)
    assert (meta.outcome, meta.error_kind, meta.programs_done, meta.programs_total) == \
        ("FAILED", "deadline", 1, 3)
    assert "ran past the board's time limit of 100 s" in meta.error_message


@pytest.mark.parametrize("killed_for,status,kind,words", [
    ("deadline", "FAILED", "deadline", "ran past the board's time limit of 100 s"),
    ("stop", "FAILED", "board_restarted", "the board daemon was stopped during execution"),
    ("cancel", "CANCELLED", "cancelled", "cancelled on request"),
])
def test_an_answer_to_our_sigterm_is_filed_with_why_we_sent_it(setup, killed_for, status, kind,
                                                               words):
    work, spool, ex, run = setup
    ex.terminate(1050.0, killed_for, 5)
    work.outcome({"re": run["id"], "work_id": "w1", "status": "FAILED", "error_kind": "stopped",
                  "error_message": "the board stopped the run (SIGTERM) after 2 of 5 programs",
                  "programs_done": 2, "programs_total": 5, "has_results": True}, 1051.0)
    meta = _filed(spool)
    assert (meta.outcome, meta.error_kind, meta.programs_done) == (status, kind, 2)
    assert words in meta.error_message
    assert meta.error_message.endswith("(after 2 of 5 programs; their results are kept)")


def test_a_sigterm_from_elsewhere_is_filed_as_the_executor_says(setup):
    work, spool, ex, run = setup
    message = "the board stopped the run (SIGTERM) after 2 of 5 programs"
    work.outcome({"re": run["id"], "work_id": "w1", "status": "FAILED", "error_kind": "stopped",
                  "error_message": message, "programs_done": 2, "programs_total": 5}, 1051.0)
    meta = _filed(spool)
    assert (meta.outcome, meta.error_kind, meta.error_message) == ("FAILED", "stopped", message)


def _capped(tmp_path, max_seconds):
    """A dispatcher (board deadline 100 s, margin 10 s) given work with a cost cap."""
    settings = BoardSettings(spool=tmp_path, deadline_seconds=100, deadline_margin_seconds=10,
                             grace_seconds=5)
    spool = Spool(tmp_path, min_free_bytes=0).ensure()
    spool.path("ready", "w2").mkdir()
    (spool.path("ready", "w2") / WORKLOAD).write_bytes(b"gz")
    spool.write_meta("ready", WorkMeta("w2", received_at=1.0, max_seconds=max_seconds))
    children = {name: FakeChild(name) for name in ("downloader", "executor", "uploader")}
    sent = []
    work = Dispatcher(settings, spool, children,
                      lambda child, kind, **fields: sent.append((child, kind, fields)))
    work.schedule(1000.0)
    run = next(fields for child, kind, fields in sent if kind == "run")
    return work, spool, children["executor"], run


def test_a_cost_cap_shorter_than_the_deadline_is_the_run_s_and_the_backstop_follows(tmp_path):
    work, spool, ex, run = _capped(tmp_path, 20.0)
    limits = RunLimits.from_message(run["limits"])
    assert (limits.deadline_seconds, limits.max_seconds, limits.run_deadline) == \
        (100, 20.0, 20.0)
    work.enforce_deadline(1000.0 + 29.99)
    assert ex.terminations == []
    work.enforce_deadline(1000.0 + 30)          # the cap + the margin, not 110
    assert ex.terminations == [(1030.0, "deadline", 5)]
    ex.running = False
    work.executor_died(ex, -9, 1035.0)
    meta = spool.read_meta("outgoing", "w2")
    assert (meta.outcome, meta.error_kind) == ("FAILED", "deadline")
    assert "ran past its MaxSeconds of 20 s (its cost cap)" in meta.error_message
    assert "--max-seconds" in meta.error_message


def test_a_cost_cap_longer_than_the_deadline_changes_nothing(tmp_path):
    work, spool, ex, run = _capped(tmp_path, 500.0)
    assert RunLimits.from_message(run["limits"]).run_deadline == 100
    work.enforce_deadline(1000.0 + 109.99)
    assert ex.terminations == []
    work.enforce_deadline(1000.0 + 110)
    assert ex.terminations == [(1110.0, "deadline", 5)]
