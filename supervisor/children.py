"""Mechanism of the process manager: spawn, signal and reap children (policy lives in
``supervisor.policy``). Every OS call on a child goes through ``Processes``, one seam that
the tests replace with a fake OS layer (no real processes)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from boardcore.bus import Heartbeat
from supervisor.policy import ChildStatus, ChildTracker

log = logging.getLogger("qick.supervisor")


class Processes:
    """The OS calls the supervisor makes on its children: start one, signal its group.

    What ``start`` returns is used as a ``subprocess.Popen`` (``pid``, ``returncode``,
    ``poll()``, ``wait(timeout)``, ``send_signal(sig)``)."""

    def start(self, argv: List[str], env: Dict[str, str], stderr=None) -> subprocess.Popen:
        """Start the process in its own session (own process group); never preexec_fn."""
        return subprocess.Popen(argv, env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL, stderr=stderr, close_fds=True)

    def killpg(self, pgid: int, sig: int) -> None:
        os.killpg(pgid, sig)


@dataclass
class Child:
    """One supervised child process."""
    name: str
    argv: Callable[[], List[str]]               # built at each start (fresh arguments)
    env: Callable[[], Dict[str, str]]
    tracker: ChildTracker
    proc: Optional[subprocess.Popen] = None
    identity: Optional[bytes] = None            # its bus identity, known after hello
    beat: Optional[Heartbeat] = None
    hello: Dict = field(default_factory=dict)   # what it said in its hello
    killed_for: Optional[str] = None            # why we signalled it (see policy.classify_exit)
    kill_at: Optional[float] = None             # when to escalate to SIGKILL
    stop_sent_at: Optional[float] = None
    last_pid: Optional[int] = None              # the pid of the process before this one
    last_words: str = ""                        # why it could not start (its farewell)
    processes: Processes = field(default_factory=Processes)  # the OS seam

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    @property
    def status(self) -> ChildStatus:
        return self.tracker.status

    def spawn(self, now: float, heartbeat: Heartbeat, stderr=None) -> None:
        """Start the process in its own session (own process group)."""
        self.proc = self.processes.start(self.argv(), self.env(), stderr)
        self.identity, self.hello, self.killed_for, self.kill_at = None, {}, None, None
        self.stop_sent_at, self.last_words = None, ""
        self.beat = heartbeat
        self.tracker.spawned(now)
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def signal_group(self, sig: int) -> None:
        """Signal the child's whole process group (it leads its own session)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            self.processes.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.proc.send_signal(sig)

    def terminate(self, now: float, reason: str, grace: float) -> None:
        """SIGTERM the group now, SIGKILL at ``now + grace`` if it is still there."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.killed_for is None:
            self.killed_for = reason
        self.signal_group(signal.SIGTERM)
        if self.kill_at is None:
            self.kill_at = now + grace

    def kill(self, reason: str) -> None:
        if self.killed_for is None:
            self.killed_for = reason
        self.signal_group(signal.SIGKILL)

    def escalate(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at and self.alive():
            log.warning("%s (pid %s) did not stop in time: SIGKILL", self.name, self.pid)
            self.signal_group(signal.SIGKILL)
            self.kill_at = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reap(self) -> Optional[int]:
        """The return code once the process has exited (and its leftover group is killed)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            return None
        # anything it left behind in its group goes too
        try:
            self.processes.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return rc


def python_module(module: str, *args: str) -> List[str]:
    return [sys.executable, "-m", module, *args]
