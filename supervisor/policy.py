"""Pure policy objects of the supervisor: (history, now) -> decision, no processes, no I/O.

- ``RestartIntensity``: N restarts within T seconds means the child is flapping; the
  supervisor then reports ``ERROR`` and retries slowly instead.
- ``ChildStatus``/``ChildTracker``: the child state machine. "Started" is a condition (the
  child said hello on the bus), not the return of ``Popen``; restarts wait out the one
  backoff policy (``qickbase.backoff``).
- ``classify_exit``: why a child died, from its wait status and what the supervisor did.
"""
from __future__ import annotations

import enum
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Optional

from boardcore import exitcodes
from qickbase.backoff import BackoffCounter


class RestartIntensity:
    """At most ``max_restarts`` restarts within ``period`` seconds (monotonic clock)."""

    def __init__(self, max_restarts: int = 5, period: float = 60.0):
        if max_restarts < 1 or period <= 0:
            raise ValueError("restart intensity needs max_restarts >= 1 and period > 0")
        self.max_restarts, self.period = max_restarts, period
        self._times: Deque[float] = deque()

    def record(self, now: float) -> None:
        self._times.append(now)
        self._forget(now)

    def exceeded(self, now: float) -> bool:
        self._forget(now)
        return len(self._times) > self.max_restarts

    def count(self, now: float) -> int:
        self._forget(now)
        return len(self._times)

    def _forget(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()


class ChildStatus(str, enum.Enum):
    STOPPED = "STOPPED"      # never started, or stopped on purpose
    STARTING = "STARTING"    # spawned, has not said hello yet
    RUNNING = "RUNNING"      # said hello; heartbeats expected
    BACKOFF = "BACKOFF"      # died or never came up; waiting to be restarted
    STOPPING = "STOPPING"    # asked to stop (SIGTERM sent), waiting for it to exit
    EXITED = "EXITED"        # exited when we wanted it to (no restart)
    FATAL = "FATAL"          # flapping: restart intensity exceeded; slow retries


_ALLOWED = {
    ChildStatus.STOPPED: {ChildStatus.STARTING},
    ChildStatus.STARTING: {ChildStatus.RUNNING, ChildStatus.BACKOFF, ChildStatus.FATAL,
                           ChildStatus.STOPPING, ChildStatus.EXITED},
    ChildStatus.RUNNING: {ChildStatus.BACKOFF, ChildStatus.FATAL, ChildStatus.STOPPING,
                          ChildStatus.EXITED},
    ChildStatus.BACKOFF: {ChildStatus.STARTING, ChildStatus.STOPPED, ChildStatus.EXITED},
    ChildStatus.STOPPING: {ChildStatus.EXITED, ChildStatus.BACKOFF, ChildStatus.FATAL},
    ChildStatus.EXITED: {ChildStatus.STARTING},
    ChildStatus.FATAL: {ChildStatus.STARTING, ChildStatus.STOPPED, ChildStatus.EXITED},
}


@dataclass
class Death:
    """Why a child died. ``kind`` is a workload ErrorKind (``crashed``, ``deadline``...)."""
    kind: str
    message: str
    returncode: Optional[int] = None


def classify_exit(returncode: int, killed_for: Optional[str] = None,
                  deadline_seconds: Optional[float] = None, *, cost_cap: bool = False) -> Death:
    """Say why a child died. ``returncode`` is ``Popen.returncode`` (negative = signal).

    ``killed_for`` is what the supervisor did: ``"deadline"``, ``"unresponsive"``,
    ``"stop"``, ``"cancel"`` or ``None`` (it died on its own). ``cost_cap``: the deadline
    was the workload's own ``MaxSeconds``.
    """
    if killed_for == "deadline" and cost_cap:
        return Death("deadline", f"the workload ran past its MaxSeconds of "
                     f"{deadline_seconds:g} s (its cost cap) and was stopped; submit it "
                     "with a larger --max-seconds or split it", returncode)
    if killed_for == "deadline":
        limit = f" of {deadline_seconds:g} s" if deadline_seconds else ""
        return Death("deadline", f"the workload ran past the board's time limit{limit} and was "
                     "stopped; split it into smaller workloads or ask the board's admin to "
                     "raise [executor] deadline_seconds", returncode)
    if killed_for == "unresponsive":
        return Death("crashed", "the executor stopped answering (hung) and was restarted; if "
                     "this repeats for this workload, it may be too heavy for the board",
                     returncode)
    if killed_for == "cancel":
        return Death("cancelled", "cancelled on request", returncode)
    if killed_for == "stop":
        return Death("board_restarted", "the board daemon was stopped during execution; "
                     "submit the workload again", returncode)
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGKILL:
            return Death("crashed", "the executor was killed (SIGKILL) while running the "
                         "workload, most likely by the out-of-memory killer; reduce the "
                         "workload's size (fewer shots or programs)", returncode)
        if sig == signal.SIGSEGV or sig == signal.SIGBUS or sig == signal.SIGABRT:
            return Death("crashed", f"the executor crashed ({name}) while running the "
                         "workload; report it to the board's admin", returncode)
        return Death("crashed", f"the executor was stopped by {name} while running the "
                     "workload; submit it again", returncode)
    if returncode == 0:
        return Death("crashed", "the executor exited in the middle of the workload; "
                     "submit it again", returncode)
    meaning = exitcodes.MEANING.get(returncode, f"exited with code {returncode}")
    return Death("crashed", f"the executor {meaning} while running the workload", returncode)


@dataclass
class ChildTracker:
    """The state machine of one child process, and its restart policy.

    The supervisor calls ``spawned``, ``hello``, ``exited`` and ``due`` with the monotonic
    clock; the tracker says what state the child is in and when to start it again. Once the
    restart intensity is exceeded the child is FATAL: ``in_error`` stays set (the board
    reports ``ERROR``) and restarts come every ``slow_retry`` seconds, until the child has
    stayed up for ``stable_seconds``.
    """
    name: str
    backoff: BackoffCounter = field(default_factory=BackoffCounter)
    intensity: RestartIntensity = field(default_factory=RestartIntensity)
    slow_retry: float = 60.0
    stable_seconds: float = 30.0
    status: ChildStatus = ChildStatus.STOPPED
    restarts: int = 0
    next_start: float = 0.0
    reason: str = ""                  # last death / fatal reason, for people
    in_error: bool = False
    started_at: Optional[float] = None
    running_since: Optional[float] = None

    def _go(self, new: ChildStatus) -> None:
        if new not in _ALLOWED[self.status]:
            raise ValueError(f"{self.name}: illegal transition {self.status.value} -> {new.value}")
        self.status = new

    def spawned(self, now: float) -> None:
        self._go(ChildStatus.STARTING)
        self.started_at = now
        self.running_since = None

    def hello(self, now: float) -> None:
        """The child said hello: it is up."""
        if self.status == ChildStatus.STARTING:
            self._go(ChildStatus.RUNNING)
            self.running_since = now

    def check_stable(self, now: float) -> bool:
        """A child up for ``stable_seconds`` resets its backoff and clears ``in_error``."""
        if (self.status == ChildStatus.RUNNING and self.running_since is not None
                and now - self.running_since >= self.stable_seconds):
            self.backoff.reset()
            self.in_error = False
            return True
        return False

    def stopping(self) -> None:
        if self.status in (ChildStatus.STARTING, ChildStatus.RUNNING):
            self._go(ChildStatus.STOPPING)

    def exited(self, now: float, reason: str, wanted: bool = False) -> ChildStatus:
        """The process is gone. Decide: EXITED (wanted), BACKOFF, or FATAL (flapping)."""
        self.reason = reason
        self.check_stable(now)
        self.running_since = None
        if wanted:
            self._go(ChildStatus.EXITED)
            return self.status
        self.intensity.record(now)
        self.restarts += 1
        if self.in_error or self.intensity.exceeded(now):
            self.in_error = True
            self._go(ChildStatus.FATAL)
            self.next_start = now + self.slow_retry
        else:
            self._go(ChildStatus.BACKOFF)
            self.next_start = now + self.backoff.next_delay()
        return self.status

    def due(self, now: float) -> bool:
        """Should the supervisor (re)start the child now?"""
        if self.status == ChildStatus.STOPPED:
            return True
        if self.status in (ChildStatus.BACKOFF, ChildStatus.FATAL):
            return now >= self.next_start
        return False
