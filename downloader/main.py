"""The downloader: the board's link to the queue (a child process of the supervisor).

- heartbeat ``PUT /devices/{id}`` every few seconds with ONLINE/BUSY/ERROR and the health
  summary the supervisor sends; uploads the soccfg the executor wrote when it changes;
  passes ``CancelRequested`` on to the supervisor;
- asks for work only when the supervisor says it wants some (``want_work``), long-polling
  where the service offers it and polling where it does not (the stock service);
- streams each workload into ``incoming/`` (temporary name, fsync, rename), checks its size,
  moves it to ``ready/`` and tells the supervisor;
- backs off with jitter on errors; the token is refreshed by ``DeviceTokenAuth``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional

from boardcore.errors import DiskFull, SpoolError
from boardcore.queuelink import Link, run_main, serve_link_child
from boardcore.settings import BoardSettings
from boardcore.spool import WORKLOAD, WorkMeta
from cloudqueue.errors import DownloadTooLarge, QueueError
from cloudqueue.transfer import download_file, upload_file
from qickbase.backoff import Backoff, BackoffCounter

log = logging.getLogger("qick.downloader")


class Downloader:
    """``client``: the queue's API (a ``QueueClient``); presigned transfers go through its
    ``session``. ``settings``: the queue link's intervals, ``max_workload_mb``, and where
    the executor writes the soccfg (``soccfg_path``)."""

    def __init__(self, link: Link, client: Any, device_id: str, settings: BoardSettings):
        self.link, self.client, self.device_id, self.s = link, client, device_id, settings
        self.want = threading.Event()
        self.status = "ONLINE"
        self.health: Optional[Dict[str, Any]] = None
        self.wake = threading.Event()
        self._soccfg_sent: Optional[float] = None
        self._cancels_sent: set = set()
        self.ask_backoff = BackoffCounter(Backoff(0.5, 30.0))  # asking for work: waits at least 0.25 s

    def on_message(self, msg: Dict[str, Any]) -> None:
        if msg["type"] == "want_work":
            if msg.get("want"):
                self.want.set()
            else:
                self.want.clear()
        elif msg["type"] == "health":
            self.status = msg.get("status") or self.status
            self.health = msg.get("summary")

    def _contact(self, ok: bool, error: Optional[str] = None) -> None:
        self.link.post("queue", ok=ok, error=error, at=time.time())

    # --- heartbeat thread ---------------------------------------------------------------
    def threads(self) -> List[threading.Thread]:
        return [threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True),
                threading.Thread(target=self.work_loop, name="work", daemon=True)]

    def heartbeat_loop(self) -> None:
        backoff = BackoffCounter(Backoff(1.0, 30.0))  # waits at least 0.5 s
        failing: Optional[str] = None  # the last error logged: an outage is logged once
        while not self.link.stop.is_set():
            delay = self.s.queue_heartbeat_seconds
            try:
                answer = self.client.heartbeat(self.device_id, self.status, health=self.health)
                self._contact(True)
                backoff.reset()
                if failing is not None:
                    log.info("the queue service answers again")
                    failing = None
                self._upload_soccfg(answer.get("UploadUrl"))
                self.forward_cancels(answer.get("CancelRequested") or [])
            except QueueError as exc:
                self._contact(False, str(exc))
                if str(exc) != failing:
                    log.warning("heartbeat failed: %s (retrying; logged again only if the "
                                "error changes)", exc)
                    failing = str(exc)
                delay = min(delay, backoff.next_delay())
            self.link.stop.wait(delay)

    def forward_cancels(self, work_ids: List[str]) -> None:
        """Tell the supervisor to stop the work the service asks to stop, once per run
        (the heartbeat repeats the ask until the run ends; a later run of the same work,
        handed out again after its timeslot ended, is a new run)."""
        for work_id in work_ids:
            if work_id not in self._cancels_sent:
                self._cancels_sent.add(work_id)
                self.link.post("cancel", work_id=work_id)

    def _upload_soccfg(self, url: Optional[str]) -> None:
        path = self.s.soccfg_path
        if not url or not path.exists():
            return
        mtime = os.path.getmtime(path)
        if mtime == self._soccfg_sent:
            return
        upload_file(url, path, what="soccfg upload", session=self.client.session)
        self._soccfg_sent = mtime
        log.info("uploaded the board's soccfg")

    # --- work thread --------------------------------------------------------------------
    def work_loop(self) -> None:
        stop = self.link.stop
        while not stop.is_set():
            if not self.want.wait(0.2):
                continue
            delay = self.ask_once()
            if delay:
                stop.wait(delay)

    def ask_once(self) -> float:
        """Ask for work once and download what is handed out; returns how long to wait
        before asking again (0: at once)."""
        spool, backoff = self.link.spool, self.ask_backoff
        try:
            if spool.ids("outgoing") and not self.client.supports("holding"):
                # a stock service hands unreported work back first, counting an attempt
                # each time: ask once the uploader has reported what outgoing/ holds
                return 0.2
            work = self.client.get_work(self.device_id, wait_seconds=self.s.long_poll_seconds,
                                        holding=self.held())
            self._contact(True)
            backoff.reset()
        except QueueError as exc:
            self._contact(False, str(exc))
            log.warning("asking for work failed: %s", exc)
            return backoff.next_delay()
        if work is None:
            # stock service: poll like the original client
            return 0.0 if self.client.supports("long-poll") else self.s.poll_seconds
        work_id = str(work.get("WorkId") or "")
        where = spool.find(work_id) if work_id else None
        if where not in (None, "done", "incoming"):
            # a stock service (no ?Holding=) hands back work this board already holds
            # (EXECUTING or UPLOADING there, its outcome not reported yet): asking again
            # at once would count one more attempt each time, so wait for it to move on
            self.wait_while_held(work_id, where)
            return 0.0
        self._cancels_sent.discard(work_id)  # a new run: its stop is asked anew
        try:
            self.fetch(work_id, work["WorkloadUrl"], max_seconds(work))
            backoff.reset()
        except DiskFull as exc:
            log.warning("%s", exc)
            self._contact(True)
            return 30.0
        except (QueueError, SpoolError, OSError, KeyError) as exc:
            log.warning("downloading workload %s failed: %s", work_id, exc)
            spool.remove("incoming", work_id)
            return backoff.next_delay()
        return 0.0

    def held(self) -> List[str]:
        """Work this board has and the service must not hand back (our ``?Holding=``)."""
        spool = self.link.spool
        return [w for state in ("incoming", "ready", "running", "outgoing")
                for w in spool.ids(state)]

    def wait_while_held(self, work_id: str, where: str, limit: float = 60.0) -> None:
        """Wait (at most ``limit`` seconds) until held work leaves ``ready/``, ``running/``
        or ``outgoing/``: the uploader reports it, or the executor finishes it."""
        log.info("the service handed back workload %s, which this board holds in %s/; "
                 "waiting for it to move on", work_id, where)
        deadline = time.monotonic() + limit
        while not self.link.stop.is_set() and time.monotonic() < deadline:
            if self.link.spool.find(work_id) != where:
                return
            self.link.stop.wait(0.1)

    def fetch(self, work_id: str, url: str, cap: Optional[float] = None) -> None:
        """Download the workload into ``ready/``; ``cap``: its cost cap (``MaxSeconds``),
        kept in its meta for the supervisor, which runs it with that deadline."""
        spool = self.link.spool
        folder = spool.create_incoming(work_id)
        meta = WorkMeta(work_id, received_at=time.time(), max_seconds=cap)
        limit_mb = self.s.max_workload_mb
        try:
            # stops reading past the limit: a huge workload never fills the disk
            download_file(url, folder / WORKLOAD, what=f"download of workload {work_id}",
                          max_bytes=limit_mb * 2**20, session=self.client.session)
        except DownloadTooLarge as exc:
            size = f"{exc.size / 2**20:.1f} MB" if exc.size and exc.size > limit_mb * 2**20 + 1 \
                else f"over {limit_mb} MB"
            meta.finish("FAILED", "too_large",
                        f"the workload file is {size}, over this board's limit of {limit_mb} MB;"
                        " split it into smaller workloads (or the board's admin raises "
                        "[executor] max_workload_mb in /etc/qick/config)")
            spool.move(work_id, "incoming", "outgoing", meta)
            log.info("workload %s refused: %s", work_id, exc)
        else:
            meta.size = (folder / WORKLOAD).stat().st_size
            spool.write_meta("incoming", meta)
            spool.move(work_id, "incoming", "ready")
            log.info("workload %s downloaded (%d bytes)", work_id, meta.size)
        self.want.clear()  # the supervisor says when it wants more
        self.link.post("work", work_id=work_id)


def max_seconds(work: Dict[str, Any]) -> Optional[float]:
    """The hand-out's ``MaxSeconds`` (our service: the workload's cost cap), None when it has
    none or it is not a positive number (logged: the board's own deadline still holds)."""
    value = work.get("MaxSeconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 < value < float("inf"):
        log.warning("workload %s: ignoring MaxSeconds %r (not a positive number); the "
                    "board's own deadline holds", work.get("WorkId"), value)
        return None
    return float(value)


def main(argv: Optional[List[str]] = None) -> int:
    return serve_link_child("downloader", __doc__.splitlines()[0], argv, Downloader)


if __name__ == "__main__":
    run_main("downloader", main)
