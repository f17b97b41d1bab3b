"""Workload dispatch, the supervisor's second job: ``ready/`` -> ``running/`` -> ``outgoing/``.

One workload at a time goes to the executor with its limits; its outcome, a cancel, a
deadline or the executor's death moves it on to ``outgoing/`` for the uploader. The
downloader is told when the board wants more work (``want_work``). Everything here runs in
the supervisor's loop: it never blocks and never touches the network.

Deadlines on both sides: the executor stops by itself between programs once the run's
deadline has passed, and answers. This side is the backstop for a program that runs on past
it: at the deadline + ``deadline_margin_seconds`` it sends SIGTERM (the executor stops after
the program running, keeps the results so far and answers), and SIGKILL ``grace_seconds``
later. The run's deadline is the board's ``deadline_seconds``, or the workload's own cost
cap (``MaxSeconds``, kept in its meta by the downloader) when that is shorter
(``RunLimits.run_deadline``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional

from boardcore.limits import RunLimits
from supervisor.children import Child
from supervisor.policy import ChildStatus, Death, classify_exit
from boardcore.settings import BoardSettings
from boardcore.spool import RESULTS, WORKLOAD, Spool, WorkMeta

log = logging.getLogger("qick.supervisor")
OUTCOMES = ("DONE", "FAILED", "CANCELLED")


@dataclass
class Assignment:
    """The workload the executor has now."""
    work_id: str
    request_id: str
    started: float
    deadline: float                 # the backstop: the run's deadline plus the margin
    limits: RunLimits               # what the executor was told
    done: int = 0
    total: int = 0
    cancel_at: Optional[float] = None


class Dispatcher:
    """Hands ready work to the executor and files what comes back.

    ``send(child_name, kind, **fields)`` posts a bus message to a child (dropped when the
    child is not up); ``children`` is the supervisor's table of children.
    """

    def __init__(self, settings: BoardSettings, spool: Spool, children: Dict[str, Child],
                 send: Callable[..., None]):
        self.s, self.spool, self.children, self._send = settings, spool, children, send
        self.job: Optional[Assignment] = None
        self.busy_seconds = 0.0
        self.last_want: Optional[bool] = None
        self.next_scan = 0.0

    # --- handing out work ------------------------------------------------------------------
    def schedule(self, now: float) -> None:
        """Start the oldest ready workload when the executor is up and idle."""
        ex = self.children["executor"]
        if self.job is not None or ex.status != ChildStatus.RUNNING or ex.identity is None:
            self.want_work(False)
            return
        if now < self.next_scan:
            return
        self.next_scan = now + 1.0
        ready = self.spool.ids("ready")
        if not ready:
            # whether unreported work in outgoing/ must be through first depends on the
            # service (?Holding=): the downloader, which talks to it, decides
            self.want_work(self.spool.has_room())
            return
        work_id = ready[0]
        meta = self.spool.read_meta("ready", work_id) or WorkMeta(work_id, received_at=time.time())
        meta.attempts += 1
        self.spool.move(work_id, "ready", "running", meta)
        folder = self.spool.path("running", work_id)
        request = f"run-{work_id}-{meta.attempts}"
        limits = replace(self.s.limits(), max_seconds=meta.max_seconds)
        self.job = Assignment(work_id, request, now,
                              now + limits.run_deadline + self.s.deadline_margin_seconds,
                              limits)
        self._send("executor", "run", id=request, work_id=work_id,
                   workload_path=str(folder / WORKLOAD), results_path=str(folder / RESULTS),
                   limits=limits.to_message())
        self.want_work(False)
        log.info("workload %s started", work_id)

    def want_work(self, want: bool) -> None:
        """Tell the downloader whether to fetch work (only when that changes)."""
        if want != self.last_want and self.children["downloader"].identity is not None:
            self.last_want = want
            self._send("downloader", "want_work", want=want)

    def uploaded(self) -> None:
        """The uploader emptied a slot of ``outgoing/``: maybe ask for work now."""
        self.next_scan = 0.0

    def work_arrived(self) -> None:
        """The downloader put work in ``ready/`` (and paused itself): look now."""
        self.next_scan = 0.0
        self.last_want = None

    # --- what comes back -------------------------------------------------------------------
    def progress(self, msg: Dict[str, Any]) -> None:
        if self.job is not None and msg.get("work_id") == self.job.work_id:
            self.job.done, self.job.total = int(msg.get("done", 0)), int(msg.get("total", 0))

    def outcome(self, msg: Dict[str, Any], now: float) -> None:
        """The executor's answer to the current ``run`` (a stale answer is dropped)."""
        job = self.job
        if job is None or msg.get("work_id") != job.work_id or msg.get("re") != job.request_id:
            log.debug("dropped a stale outcome for %s", msg.get("work_id"))
            return
        if msg.get("status") == "REFUSED":
            self.spool.move(job.work_id, "running", "ready")
            self.job = None
            return
        meta = self.spool.read_meta("running", job.work_id) or WorkMeta(job.work_id)
        status = msg.get("status") if msg.get("status") in OUTCOMES else "FAILED"
        kind, message = msg.get("error_kind"), msg.get("error_message")
        killed_for = self.children["executor"].killed_for
        if kind == "stopped" and killed_for is not None:
            # it stopped on our SIGTERM: say why we sent it (its programs done are kept)
            meaning = self._classify(0, killed_for)
            status = "CANCELLED" if meaning.kind == "cancelled" else "FAILED"
            kind = meaning.kind
            message = (f"{meaning.message} (after {msg.get('programs_done') or 0} of "
                       f"{msg.get('programs_total') or 0} programs; their results are kept)")
        meta.finish(status, kind, message,
                    programs_done=int(msg.get("programs_done") or 0),
                    programs_total=int(msg.get("programs_total") or 0),
                    seconds=float(msg.get("seconds") or 0.0),
                    has_results=bool(msg.get("has_results")))
        self._finish(meta, now)

    def executor_died(self, child: Child, rc: int, now: float) -> None:
        """The executor is gone in the middle of a workload: file it as CANCELLED or FAILED
        with the reason read from the wait status."""
        if self.job is None:
            return
        job = self.job
        meta = self.spool.read_meta("running", job.work_id) or WorkMeta(job.work_id)
        if child.killed_for == "cancel" or (job.cancel_at is not None and
                                            child.killed_for is None and rc == 0):
            # the program running did not end within the grace period: the programs done
            # before it are kept (their results are flushed program by program)
            meta.finish("CANCELLED", "cancelled",
                        f"cancelled on request; the run did not stop within "
                        f"{self.s.grace_seconds:g} s and was stopped by force after "
                        f"{job.done} of {job.total} programs",
                        programs_done=job.done, programs_total=job.total)
        else:
            meaning = self._classify(rc, child.killed_for)
            meta.finish("FAILED", meaning.kind, meaning.message,
                        programs_done=job.done, programs_total=job.total)
        res = self.spool.path("running", job.work_id) / RESULTS
        meta.has_results = res.exists() and job.done > 0
        if res.exists() and not meta.has_results:
            res.unlink()
        self._finish(meta, now)

    def _classify(self, rc: int, killed_for: Optional[str]) -> Death:
        limits = self.job.limits
        return classify_exit(rc, killed_for, limits.run_deadline, cost_cap=limits.capped)

    def _finish(self, meta: WorkMeta, now: float) -> None:
        self.busy_seconds += meta.seconds or (now - self.job.started)
        self.spool.move(meta.work_id, "running", "outgoing", meta)
        log.info("workload %s %s%s", meta.work_id, meta.outcome,
                 f": {meta.error_message}" if meta.error_message else "")
        self.job = None
        self._send("uploader", "kick")
        self.next_scan = 0.0

    # --- cancel and deadline ---------------------------------------------------------------
    def cancel(self, work_id: Optional[str], now: float) -> None:
        """A cancel the service asked for: ready work ends at once; running work is asked
        to stop between programs (and stopped by force after the grace period)."""
        if not work_id:
            return
        where = self.spool.find(work_id)
        if where == "ready":
            meta = self.spool.read_meta("ready", work_id) or WorkMeta(work_id)
            meta.finish("CANCELLED", "cancelled", "cancelled before it started")
            self.spool.move(work_id, "ready", "outgoing", meta)
            log.info("workload %s CANCELLED before it started", work_id)
            self._send("uploader", "kick")
        elif self.job is not None and self.job.work_id == work_id and self.job.cancel_at is None:
            self.job.cancel_at = now
            log.info("workload %s: cancel requested, stopping it", work_id)
            self._send("executor", "cancel", work_id=work_id)

    def enforce_deadline(self, now: float) -> None:
        job, ex = self.job, self.children["executor"]
        if job is None:
            return
        if now >= job.deadline and ex.killed_for is None and ex.alive():
            log.warning("workload %s passed its deadline (%g s%s) and the margin (%g s): "
                        "stopping the executor", job.work_id, job.limits.run_deadline,
                        ", its MaxSeconds" if job.limits.capped else "",
                        self.s.deadline_margin_seconds)
            ex.terminate(now, "deadline", self.s.grace_seconds)
        elif job.cancel_at is not None and now - job.cancel_at > self.s.grace_seconds and \
                ex.killed_for is None and ex.alive():
            ex.terminate(now, "cancel", self.s.grace_seconds)

    # --- for the health snapshot -----------------------------------------------------------
    def current(self, now: float) -> Optional[Dict[str, Any]]:
        if self.job is None:
            return None
        return {"work_id": self.job.work_id, "programs_done": self.job.done,
                "programs_total": self.job.total, "seconds": round(now - self.job.started, 2)}

    def busy_total(self, now: float) -> float:
        return self.busy_seconds + (now - self.job.started if self.job else 0.0)

