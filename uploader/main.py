"""The uploader: takes finished work from ``outgoing/``, reports its outcome, PUTs the
results, and only after the service has them moves the work to ``done/``.

Failures to reach the service are retried with exponential backoff and jitter, forever and
across restarts (the work stays in ``outgoing/`` until it is through). Answers that can
never succeed (the work is not this board's any more: 404; already terminal: 409) move the
work to ``done/`` with the reason recorded in its meta.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from boardcore.errors import SpoolError
from boardcore.queuelink import Link, run_main, serve_link_child
from boardcore.settings import BoardSettings
from boardcore.spool import RESULTS, WorkMeta
from cloudqueue.errors import BadRequest, Conflict, NotFound, NotSupported, QueueError
from cloudqueue.transfer import upload_file
from qickbase.backoff import Backoff, BackoffCounter

log = logging.getLogger("qick.uploader")


class Uploader:
    """``client``: the queue's API (a ``QueueClient``); presigned transfers go through its
    ``session``. ``settings``: ``[uploader]`` retry_base/max_seconds and scan_seconds."""

    def __init__(self, link: Link, client: Any, device_id: str, settings: BoardSettings):
        self.link, self.client, self.device_id, self.s = link, client, device_id, settings
        self.kick = threading.Event()
        self.retry: Dict[str, tuple] = {}   # work_id -> (BackoffCounter, next try, monotonic)

    def on_message(self, msg: Dict[str, Any]) -> None:
        if msg["type"] == "kick":
            self.kick.set()

    def threads(self) -> List[threading.Thread]:
        return [threading.Thread(target=self.loop, name="upload", daemon=True)]

    def loop(self) -> None:
        while not self.link.stop.is_set():
            self.kick.clear()
            for work_id in self.link.spool.ids("outgoing"):
                if self.link.stop.is_set():
                    return
                if self.due(work_id, time.monotonic()):
                    self.upload(work_id)
            waits = [t for _, t in self.retry.values()]
            wait = self.s.scan_seconds
            if waits:
                wait = max(0.05, min(wait, min(waits) - time.monotonic()))
            self.kick.wait(wait)

    def due(self, work_id: str, now: float) -> bool:
        """False while a failed work waits out its backoff."""
        return now >= self.retry.get(work_id, (None, 0.0))[1]

    def upload(self, work_id: str) -> None:
        spool = self.link.spool
        meta = spool.read_meta("outgoing", work_id) or WorkMeta(work_id).finish(
            "FAILED", "device_error", "the board lost this workload's record; submit it again")
        results = spool.path("outgoing", work_id) / RESULTS
        refused = None
        try:
            self._send(meta, results)
        except (NotFound, Conflict, BadRequest, NotSupported) as exc:
            meta.upload_error = f"{type(exc).__name__}: {exc}"
            refused = exc
        except QueueError as exc:
            self._later(meta, f"upload of {work_id} failed ({exc})", str(exc))
            return
        except OSError as exc:  # the results file (stock: writing it) or the disk
            self._later(meta, f"workload {work_id}: {exc.strerror or exc} while preparing "
                        "its upload", str(exc))
            return
        self.retry.pop(work_id, None)
        try:
            spool.move(work_id, "outgoing", "done", meta)
        except (OSError, SpoolError) as exc:
            # the service has it; moving it on failed (a full disk?): try again later (the
            # service answers a repeat with 409, which also moves it to done/)
            self._later(meta, f"workload {work_id} was reported but cannot be moved to "
                        f"done/ ({exc})", str(exc))
            return
        self.link.post("uploaded", work_id=work_id, outcome=meta.outcome)
        if refused is None:
            log.info("workload %s reported %s: the service accepted it", work_id, meta.outcome)
        else:
            log.warning("workload %s: the service refused its %s (%s %s: %s); kept in done/",
                        work_id, meta.outcome, refused.status or "", refused.kind, refused)

    def _later(self, meta: WorkMeta, what: str, error: str) -> None:
        """Retry this work after a backoff; one bad entry never stops the others."""
        backoff = self.retry.get(meta.work_id, (BackoffCounter(Backoff(
            self.s.retry_base_seconds, self.s.retry_max_seconds)),))[0]
        delay = backoff.next_delay()
        self.retry[meta.work_id] = (backoff, time.monotonic() + delay)
        meta.upload_attempts += 1
        meta.upload_error = error
        try:
            self.link.spool.write_meta("outgoing", meta)
        except (OSError, SpoolError) as exc:
            log.warning("workload %s: cannot record the failed attempt (%s)", meta.work_id, exc)
        log.warning("%s; retry in %.1f s", what, delay)

    def _put(self, url: str, results: Path, what: str) -> None:
        upload_file(url, results, what=what, session=self.client.session)

    def _send(self, meta: WorkMeta, results) -> None:
        c, dev = self.client, self.device_id
        if meta.outcome == "DONE":
            if not results.exists():
                meta.finish("FAILED", "device_error", "the board finished the workload but "
                            "its results file is missing; submit it again")
            else:
                url = c.results_upload_url(dev, meta.work_id, device_seconds=meta.seconds,
                                           programs_done=meta.programs_total or None)
                self._put(url, results, f"results upload of {meta.work_id}")
                return
        if not c.supports("failed-state"):
            # a stock service has no FAILED (nor CANCELLED): finish the work the only way it
            # knows, with a results file that records the status and the error for the
            # user; reporting nothing would have it handed back and run again forever
            if results.exists():
                record_outcome(results, meta)
            else:
                write_error_results(results, meta)
            url = c.results_upload_url(dev, meta.work_id)
            self._put(url, results, f"results upload of {meta.work_id} "
                                    f"({meta.outcome}: {meta.error_message})")
            return
        if meta.outcome == "CANCELLED":
            # the programs done before the stop are kept: uploaded as partial results
            partial = bool(meta.has_results and meta.programs_done > 0 and results.exists()
                           and finish_partial(results, meta))
            answer = c.report_outcome(dev, meta.work_id, "CANCELLED",
                                      error_message=meta.error_message if partial else None,
                                      partial_results=True if partial else None,
                                      device_seconds=meta.seconds if partial else None,
                                      programs_done=meta.programs_done if partial else None)
            if partial and answer.get("UploadUrl"):
                self._put(answer["UploadUrl"], results,
                          f"partial results upload of {meta.work_id} (CANCELLED)")
            return
        partial = bool(meta.has_results and results.exists() and finish_partial(results, meta))
        answer = c.report_outcome(dev, meta.work_id, "FAILED",
                                  error_message=meta.error_message or "failed on the board",
                                  error_kind=meta.error_kind or "device_error",
                                  partial_results=partial, device_seconds=meta.seconds,
                                  programs_done=meta.programs_done if partial else None)
        if partial and answer.get("UploadUrl"):
            self._put(answer["UploadUrl"], results,
                      f"partial results upload of {meta.work_id}")


def write_error_results(path, meta: WorkMeta) -> None:
    """A results file holding only the outcome and the error (no program ran to the end)."""
    from qickwork.results import ResultsWriter  # h5py: heavy, needed only for failures
    with ResultsWriter(path, programs_total=meta.programs_total or 0,
                       work_id=meta.work_id) as writer:
        writer.finish(meta.outcome or "FAILED", seconds=meta.seconds or 0.0,
                      error_kind=meta.error_kind or "device_error",
                      error_message=meta.error_message or "failed on the board")


def finish_partial(path: Path, meta: WorkMeta) -> bool:
    """Make partial results record the outcome: a file whose writer died (an executor
    killed for a deadline, a crash, a cancel that did not stop in time) still says RUNNING.
    False when the file cannot be opened (cut in the middle of a write)."""
    from qickwork.results import record_interruption  # h5py: heavy, only for partials
    try:
        record_interruption(path, meta.outcome or "FAILED",
                            meta.error_kind or "device_error",
                            meta.error_message or "failed on the board")
    except OSError as exc:
        log.warning("workload %s: its partial results cannot be read (%s); reporting the "
                    "outcome alone", meta.work_id, exc)
        return False
    return True


def record_outcome(path: Path, meta: WorkMeta) -> None:
    """A stock service's results file records the outcome (``finish_partial``); one that
    cannot be opened is replaced by a file holding only the outcome."""
    if not finish_partial(path, meta):
        path.unlink()
        write_error_results(path, meta)


def main(argv: Optional[List[str]] = None) -> int:
    return serve_link_child("uploader", __doc__.splitlines()[0], argv, Uploader)


if __name__ == "__main__":
    run_main("uploader", main)
