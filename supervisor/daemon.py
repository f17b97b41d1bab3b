"""The supervisor's main loop: children, bus, drain, watchdog.

The loop never touches the network (the downloader and uploader do) and signal handlers
only set flags. One pass: read the bus, reap and restart children, enforce deadlines and
heartbeats, hand ready work to the executor (``supervisor.dispatch``), publish the health
snapshot (``supervisor.snapshot``), ping the watchdog.
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from boardcore import exitcodes
from boardcore.bus import Heartbeat, SupervisorBus
from boardcore.childstart import MODULES, ChildStart
from boardcore.errors import SpoolError
from boardcore.settings import BoardSettings
from boardcore.spool import INTERRUPTED, RESULTS, Spool
from qickbase.backoff import Backoff, BackoffCounter
from supervisor import snapshot
from supervisor.childenv import executor_environment, link_environment
from supervisor.children import Child, Processes, python_module
from supervisor.dispatch import OUTCOMES, Dispatcher
from supervisor.policy import ChildStatus, ChildTracker, RestartIntensity
from supervisor.systemd import SystemdNotify

log = logging.getLogger("qick.supervisor")
NAMES = ("downloader", "executor", "uploader")


def explain_interrupted(spool: Spool, work_id: str) -> None:
    """Work the daemon was running when it died, filed FAILED (``board_restarted``) in
    ``outgoing/`` by ``Spool.recover``: say how far it got, and finish its half-written
    results file with that reason (it still says RUNNING), keeping the programs it holds as
    partial results. On a stock service that file is the only place a user reads why. A
    run that had ended (its file records DONE, FAILED or CANCELLED: the daemon died before
    it filed the outcome) is reported as its file says."""
    meta = spool.read_meta("outgoing", work_id)
    results = spool.path("outgoing", work_id) / RESULTS
    if meta is None or not results.exists():
        return
    try:
        # h5py: heavy, and needed only after a crash (imported here, not at every start)
        from qickwork.results import record_interruption, recorded_outcome
        seen = recorded_outcome(results)
        done, total = int(seen["ProgramsDone"] or 0), int(seen["ProgramsTotal"] or 0)
        meta.programs_done, meta.programs_total = done, total
        meta.error_message = (f"{INTERRUPTED} (programs done {done} of {total}); submit it "
                              f"again")
        if seen["Status"] in ("DONE", "FAILED", "CANCELLED"):
            # the run ended and its file says how; only the daemon's filing of it was lost
            meta.finish(seen["Status"], seen["ErrorKind"], seen["ErrorMessage"])
        elif done > 0:
            record_interruption(results, meta.outcome or "FAILED",
                                meta.error_kind or "board_restarted", meta.error_message)
        meta.has_results = done > 0 or meta.outcome == "DONE"
    except (ImportError, OSError, ValueError, TypeError) as exc:
        log.warning("workload %s: its results file cannot be read (%s); reporting the "
                    "failure without results", work_id, exc)
        meta.has_results = False
    if not meta.has_results:
        results.unlink()  # nothing worth keeping: the uploader reports the failure alone
    spool.write_meta("outgoing", meta)


class Supervisor:
    def __init__(self, settings: BoardSettings, config_path: Optional[str],
                 credentials_path: Optional[str], systemd: Optional[SystemdNotify] = None,
                 clock: Callable[[], float] = time.monotonic,
                 processes: Optional[Processes] = None):
        """``clock`` (monotonic seconds) and ``processes`` (the OS calls on children) are
        the seams the step's direct tests replace; so is ``bus`` when set before ``setup``."""
        self.s = settings
        self.clock = clock
        self.processes = processes or Processes()
        self.config_path, self.credentials_path = config_path, credentials_path
        self.spool = Spool(settings.spool, settings.min_free_mb * 2**20)
        self.systemd = systemd or SystemdNotify()
        self.run_dir = Path(settings.run_dir)
        self.soccfg_path = settings.soccfg_path
        self.children: Dict[str, Child] = {}
        self.work = Dispatcher(settings, self.spool, self.children, self._send)
        self.draining = False
        self.stop_now = False
        self.drain_started: Optional[float] = None
        self.queue: Dict[str, Any] = {"ok": False, "error": "no contact yet", "last_ok_at": None}
        self.counts = {name: 0 for name in OUTCOMES}
        self.snapshot: Dict[str, Any] = snapshot.initial_snapshot(
            self.queue, self.counts, clock(), simulated=self.simulated)
        self.bus: Optional[SupervisorBus] = None
        self._next_prune = 0.0
        self._next_health_push = 0.0
        self._sigterms = 0

    @property
    def simulated(self) -> bool:
        """``[executor] board = simulated``: no RFSoC; said everywhere people look."""
        return self.s.board == "simulated"

    # --- set-up -----------------------------------------------------------------------------
    def _tracker(self, name: str) -> ChildTracker:
        s = self.s
        return ChildTracker(name, BackoffCounter(Backoff(s.backoff_base_seconds,
                                                         s.backoff_max_seconds)),
                            RestartIntensity(s.restart_max, s.restart_period_seconds),
                            slow_retry=s.restart_slow_seconds,
                            stable_seconds=max(5.0, 3 * s.heartbeat_timeout_seconds))

    def _argv(self, name: str) -> list:
        """A child's command line: only what is not in the config (``boardcore.childstart``);
        the executor never gets the credentials path."""
        start = ChildStart(bus=self.bus.address, parent=os.getpid(), config=self.config_path,
                           credentials=None if name == "executor" else self.credentials_path,
                           spool=str(self.spool.root), run_dir=str(self.run_dir))
        return python_module(MODULES[name], *start.argv())

    def setup(self) -> Dict[str, list]:
        """Spool recovery, run directory, bus. Returns the recovery report."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        report = self.spool.recover(self.s.rerun_interrupted)
        for key, ids in report.items():
            if ids:
                log.warning("spool recovery: %s %s", key, ", ".join(ids))
        for work_id in report["failed"]:
            explain_interrupted(self.spool, work_id)
        if self.soccfg_path.exists():
            self.soccfg_path.unlink()
        if self.bus is None:
            self.bus = SupervisorBus(self.run_dir)
        parent_env = dict(os.environ)
        envs = {"downloader": link_environment, "executor": executor_environment,
                "uploader": link_environment}
        self.children.update({  # the dispatcher holds this same table
            name: Child(name, functools.partial(self._argv, name),
                        functools.partial(envs[name], parent_env), self._tracker(name))
            for name in NAMES})
        for child in self.children.values():
            child.processes = self.processes
        return report

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame) -> None:  # only flags
        self._sigterms += 1
        if self._sigterms == 1:
            self.draining = True
        else:
            self.stop_now = True

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        self.setup()
        try:
            while True:
                if self.step(self.clock()):
                    return 0
        finally:
            self.shutdown()

    def step(self, now: float) -> bool:
        """One pass of the loop. Returns True when the supervisor may exit. ``now`` is the
        clock when the pass began; what arrives on the bus meanwhile is read at its time."""
        for identity, msg in self.bus.recv(0.05):
            self._handle(identity, msg, self.clock())
        now = self.clock()
        for child in self.children.values():
            self._supervise(child, now)
        self.work.enforce_deadline(now)
        if self.draining:
            if self.drain_started is None:
                self.drain_started = now
                self.systemd.stopping("stopping: finishing the current workload")
                log.info("SIGTERM: draining (stop timeout %.0f s)", self.s.stop_timeout_seconds)
            if self._drain(now):
                return True
        else:
            self.work.schedule(now)
        self._housekeeping(now)
        self._publish(now)
        return False

    # --- messages -------------------------------------------------------------------------
    def _child_for(self, identity: bytes, msg: Dict[str, Any]) -> Optional[Child]:
        name = identity.decode(errors="replace").rsplit("-", 1)[0]
        child = self.children.get(name)
        if child is not None and msg["type"] == "farewell":
            # it may be reaped already: its last words still explain its exit
            return child if msg.get("pid") in (child.pid, child.last_pid) else None
        if child is None or child.proc is None:
            return None
        if msg["type"] == "hello":
            if msg.get("pid") != child.pid:
                return None  # a predecessor's hello arriving late: stale
            child.identity = identity
            return child
        return child if identity == child.identity else None

    def _handle(self, identity: bytes, msg: Dict[str, Any], now: float) -> None:
        child = self._child_for(identity, msg)
        if child is None:
            log.debug("dropped a stale %s from %r", msg["type"], identity)
            return
        child.beat.heard(now)
        kind = msg["type"]
        if kind == "farewell":
            words = str(msg.get("error") or "")[:500]
            if child.proc is None and words and child.tracker.reason:
                child.tracker.reason += f": {words}"  # reaped before the message arrived
            else:
                child.last_words = words
        elif kind == "hello":
            child.hello = msg
            child.tracker.hello(now)
            log.info("%s is up (pid %s)", child.name, child.pid)
            if child.name == "downloader":
                self.work.last_want = None
            if child.name == "executor" and msg.get("network") != "private":
                log.warning("executor network isolation: %s", msg.get("network"))
        elif kind == "progress":
            self.work.progress(msg)
        elif kind == "outcome":
            self.work.outcome(msg, now)
        elif kind == "work":
            self.work.work_arrived()  # the downloader paused itself: tell it again
            self._send("uploader", "kick")
        elif kind == "cancel":
            self.work.cancel(msg.get("work_id"), now)
        elif kind == "queue":
            self.queue["ok"] = bool(msg.get("ok"))
            self.queue["error"] = msg.get("error")
            if msg.get("ok"):
                self.queue["last_ok_at"] = msg.get("at") or time.time()
        elif kind == "uploaded":
            self.work.uploaded()
            outcome = msg.get("outcome")
            if outcome in self.counts:
                self.counts[outcome] += 1

    def _send(self, name: str, kind: str, **fields: Any) -> None:
        child = self.children.get(name)
        if child is not None and child.identity is not None and child.alive():
            self.bus.send(child.identity, kind, **fields)

    # --- children ---------------------------------------------------------------------------
    def _supervise(self, child: Child, now: float) -> None:
        rc = child.reap()
        if rc is not None:
            self._on_exit(child, rc, now)
        elif child.proc is not None and child.status in (ChildStatus.STARTING,
                                                          ChildStatus.RUNNING):
            child.escalate(now)
            if child.status == ChildStatus.RUNNING and child.beat.silent(now) and \
                    child.killed_for is None:
                log.warning("%s (pid %s) silent for %.1f s: restarting it", child.name,
                            child.pid, child.beat.age(now))
                child.kill("unresponsive")
            elif child.status == ChildStatus.STARTING and child.killed_for is None and \
                    now - child.tracker.started_at > self.s.start_timeout_seconds:
                log.warning("%s did not say hello within %.0f s: restarting it", child.name,
                            self.s.start_timeout_seconds)
                child.kill("unresponsive")
            elif child.status == ChildStatus.RUNNING:
                if child.beat.send_due(now):
                    self.bus.send(child.identity, "ping")
                    child.beat.sent(now)
                child.tracker.check_stable(now)
        elif child.proc is not None and child.status == ChildStatus.STOPPING:
            child.escalate(now)
        if child.proc is None:
            if not self.draining and child.tracker.due(now):
                try:
                    child.spawn(now, Heartbeat(self.s.heartbeat_seconds,
                                               self.s.heartbeat_timeout_seconds, now))
                except OSError as exc:
                    log.error("cannot start %s: %s", child.name, exc)
                    child.tracker.spawned(now)
                    child.tracker.exited(now, f"cannot start: {exc}")

    def _on_exit(self, child: Child, rc: int, now: float) -> None:
        wanted = self.draining or child.killed_for == "stop"
        reason = f"exited with {rc}" if rc >= 0 else f"killed by signal {-rc}"
        if child.name == "executor":
            if self.work.job is not None and rc == 0:
                # it answered before it exited (a SIGTERM stops it after the program
                # running): read that answer, still in flight, before filing a death
                for identity, msg in self.bus.recv(0.05):
                    self._handle(identity, msg, now)
            self.work.executor_died(child, rc, now)
            if rc > 0:
                reason = f"the executor {exitcodes.MEANING.get(rc, reason)}"
        if child.last_words:
            reason += f": {child.last_words}"
        state = child.tracker.exited(now, reason, wanted=wanted)
        log.log(logging.INFO if wanted else logging.WARNING, "%s (pid %s) %s -> %s",
                child.name, child.pid, reason, state.value)
        child.last_pid, child.proc, child.identity = child.pid, None, None

    # --- drain ------------------------------------------------------------------------------
    def _drain(self, now: float) -> bool:
        """Stop taking work; let the current one finish within the stop timeout, and the
        uploader report what is finished (within the same timeout; what it does not reach
        stays in outgoing/ for the next start); then stop the children. Returns True once
        all are gone."""
        self.work.want_work(False)
        elapsed = now - self.drain_started
        in_time = not self.stop_now and elapsed <= self.s.stop_timeout_seconds
        ex = self.children["executor"]
        if self.work.job is not None:
            if not in_time:
                ex.terminate(now, "stop", self.s.grace_seconds)
            return False
        uploader = self.children["uploader"]
        if in_time and uploader.status == ChildStatus.RUNNING and self.queue.get("ok") and \
                self.spool.ids("outgoing"):
            return False
        alive = False
        for child in self.children.values():
            if child.alive():
                alive = True
                if child.stop_sent_at is None:
                    child.stop_sent_at = now
                    child.tracker.stopping()
                    self._send(child.name, "stop")
                if self.stop_now or now - child.stop_sent_at > self.s.grace_seconds:
                    child.terminate(now, "stop", self.s.grace_seconds)
        return not alive

    # --- health -----------------------------------------------------------------------------
    def board_state(self) -> tuple:
        return snapshot.board_state(self.children, self.spool, self.work.job is not None)

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_prune:
            self._next_prune = now + 60.0
            try:
                self.spool.prune_done(self.s.done_max_age_days * 86400, self.s.done_max_mb * 2**20)
            except (OSError, SpoolError) as exc:
                log.warning("pruning done/ failed: %s", exc)

    def _publish(self, now: float) -> None:
        state, reason = self.board_state()
        self.snapshot = snapshot.build_snapshot(
            now=now, state=state, reason=reason, children=self.children,
            current=self.work.current(now), spool=self.spool, queue=self.queue,
            counts=self.counts, busy_seconds=self.work.busy_total(now), draining=self.draining,
            simulated=self.simulated)
        # a child's heartbeat late by half its timeout stops the pings until it is replaced
        healthy = all(c.status != ChildStatus.RUNNING or c.beat.age(now) <= c.beat.timeout / 2
                      for c in self.children.values())
        if not self.systemd.ready_sent and all(
                c.status == ChildStatus.RUNNING or (c.name == "executor" and c.tracker.in_error)
                for c in self.children.values()):
            self.systemd.ready(self.status_line())
        self.systemd.status(self.status_line())
        self.systemd.watchdog(now, healthy)
        if now >= self._next_health_push:
            self._next_health_push = now + 2.0
            self._send("downloader", "health", status=state,
                       summary=self.health_summary())

    def health_summary(self) -> Dict[str, Any]:
        return snapshot.health_summary(self.snapshot)

    def status_line(self) -> str:
        return snapshot.status_line(self.snapshot, self.draining)

    def shutdown(self) -> None:
        for child in self.children.values():
            if child.alive():
                child.kill("stop")
                try:
                    child.proc.wait(5)
                except subprocess.TimeoutExpired:  # best effort at exit: it was SIGKILLed
                    pass
        if self.bus is not None:
            self.bus.close()
