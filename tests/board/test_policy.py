"""The supervisor's pure policy objects: restart intensity, child states, deaths (the
backoff itself is tested in tests/base/test_backoff.py)."""
import signal

import pytest

from boardcore import exitcodes
from qickbase.backoff import Backoff, BackoffCounter
from supervisor.policy import ChildStatus, ChildTracker, RestartIntensity, classify_exit

pytestmark = pytest.mark.device310


def test_restart_intensity_counts_only_within_the_period():
    r = RestartIntensity(max_restarts=3, period=10.0)
    for t in (0.0, 1.0, 2.0):
        r.record(t)
    assert not r.exceeded(2.0)
    r.record(3.0)
    assert r.exceeded(3.0)
    assert not r.exceeded(10.5)  # the first one fell out of the window
    assert r.count(12.5) == 1


def test_child_is_started_only_after_hello():
    c = ChildTracker("executor")
    assert c.due(0.0)
    c.spawned(0.0)
    assert c.status == ChildStatus.STARTING
    c.hello(0.5)
    assert c.status == ChildStatus.RUNNING


def test_child_dies_into_backoff_then_flaps_into_fatal_with_slow_retries():
    c = ChildTracker("executor",
                     backoff=BackoffCounter(Backoff(base=1.0, cap=2.0), rand=lambda: 1.0),
                     intensity=RestartIntensity(max_restarts=2, period=60.0), slow_retry=30.0)
    now = 0.0
    c.spawned(now)
    assert c.exited(now, "crashed") == ChildStatus.BACKOFF
    assert not c.due(now + 0.5) and c.due(now + 1.0)
    c.spawned(1.0)
    assert c.exited(1.0, "crashed") == ChildStatus.BACKOFF
    c.spawned(3.0)
    assert c.exited(3.0, "crashed again") == ChildStatus.FATAL
    assert c.in_error and c.reason == "crashed again"
    assert not c.due(32.9) and c.due(33.0)
    # after a slow retry that comes up but dies quickly, it stays FATAL (no burst of restarts)
    c.spawned(33.0)
    c.hello(33.1)
    assert c.exited(34.0, "crashed") == ChildStatus.FATAL
    # once it stays up long enough, the error clears
    c.spawned(64.0)
    c.hello(64.1)
    assert not c.check_stable(70.0)
    assert c.check_stable(95.0) and not c.in_error
    assert c.restarts == 4


def test_child_stop_on_purpose_is_not_a_restart():
    c = ChildTracker("uploader")
    c.spawned(0.0)
    c.hello(0.1)
    c.stopping()
    assert c.status == ChildStatus.STOPPING
    assert c.exited(1.0, "stopped", wanted=True) == ChildStatus.EXITED
    assert c.restarts == 0


def test_illegal_transition_is_refused():
    c = ChildTracker("x")
    with pytest.raises(ValueError):
        c._go(ChildStatus.RUNNING)  # STOPPED cannot become RUNNING without starting


@pytest.mark.parametrize("rc,killed_for,kind,words", [
    (-signal.SIGKILL, "deadline", "deadline", "time limit of 5 s"),
    (-signal.SIGKILL, None, "crashed", "out-of-memory"),
    (-signal.SIGSEGV, None, "crashed", "SIGSEGV"),
    (-signal.SIGTERM, None, "crashed", "SIGTERM"),
    (-signal.SIGKILL, "unresponsive", "crashed", "stopped answering"),
    (exitcodes.BOARD_BUSY, None, "crashed", "another program"),
    (3, None, "crashed", "exited with code 3"),
    (0, None, "crashed", "exited in the middle"),
    (-signal.SIGTERM, "stop", "board_restarted", "stopped during execution"),
])
def test_classify_exit_says_why(rc, killed_for, kind, words):
    death = classify_exit(rc, killed_for, deadline_seconds=5)
    assert death.kind == kind
    assert words in death.message
    assert death.returncode == rc
