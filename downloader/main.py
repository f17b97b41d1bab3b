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

from cloudqueue.errors import ConfigError, QueueError
from boardcore import exitcodes
from boardcore.errors import DiskFull, SpoolError
from boardcore.queuelink import Link, base_parser, make_client, run_main
from boardcore.spool import WORKLOAD, WorkMeta
from qickbase.backoff import Backoff, BackoffCounter

log = logging.getLogger("qick.downloader")


class Downloader:
    def __init__(self, link: Link, client: Any, device_id: str, args: Any):
        self.link, self.client, self.device_id, self.args = link, client, device_id, args
        self.want = threading.Event()
        self.status = "ONLINE"
        self.health: Optional[Dict[str, Any]] = None
        self.wake = threading.Event()
        self._soccfg_sent: Optional[float] = None
        self._cancels_sent: set = set()

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
    def heartbeat_loop(self) -> None:
        backoff = BackoffCounter(Backoff(1.0, 30.0))  # waits at least 0.5 s
        failing: Optional[str] = None  # the last error logged: an outage is logged once
        while not self.link.stop.is_set():
            delay = self.args.queue_heartbeat
            try:
                answer = self.client.heartbeat(self.device_id, self.status, health=self.health)
                self._contact(True)
                backoff.reset()
                if failing is not None:
                    log.info("the queue service answers again")
                    failing = None
                self._upload_soccfg(answer.get("UploadUrl"))
                for work_id in answer.get("CancelRequested") or []:
                    if work_id not in self._cancels_sent:
                        self._cancels_sent.add(work_id)
                        self.link.post("cancel", work_id=work_id)
            except QueueError as exc:
                self._contact(False, str(exc))
                if str(exc) != failing:
                    log.warning("heartbeat failed: %s (retrying; logged again only if the "
                                "error changes)", exc)
                    failing = str(exc)
                delay = min(delay, backoff.next_delay())
            self.link.stop.wait(delay)

    def _upload_soccfg(self, url: Optional[str]) -> None:
        path = self.args.soccfg
        if not url or not path or not os.path.exists(path):
            return
        mtime = os.path.getmtime(path)
        if mtime == self._soccfg_sent:
            return
        from cloudqueue.transfer import upload_file
        upload_file(url, path, what="soccfg upload")
        self._soccfg_sent = mtime
        log.info("uploaded the board's soccfg")

    # --- work thread --------------------------------------------------------------------
    def work_loop(self) -> None:
        backoff = BackoffCounter(Backoff(0.5, 30.0))  # waits at least 0.25 s
        stop = self.link.stop
        while not stop.is_set():
            if not self.want.wait(0.2):
                continue
            try:
                if self.link.spool.ids("outgoing") and not self.client.supports("holding"):
                    # a stock service hands unreported work back first, counting an attempt
                    # each time: ask once the uploader has reported what outgoing/ holds
                    stop.wait(0.2)
                    continue
                work = self.client.get_work(self.device_id, wait_seconds=self.args.long_poll,
                                            holding=self.held())
                self._contact(True)
                backoff.reset()
            except QueueError as exc:
                self._contact(False, str(exc))
                log.warning("asking for work failed: %s", exc)
                stop.wait(backoff.next_delay())
                continue
            if work is None:
                if not self.client.supports("long-poll"):
                    stop.wait(self.args.poll)  # stock service: poll like the original client
                continue
            work_id = str(work.get("WorkId") or "")
            where = self.link.spool.find(work_id) if work_id else None
            if where not in (None, "done", "incoming"):
                # a stock service (no ?Holding=) hands back work this board already holds
                # (EXECUTING or UPLOADING there, its outcome not reported yet): asking again
                # at once would count one more attempt each time, so wait for it to move on
                self.wait_while_held(work_id, where)
                continue
            try:
                self.fetch(work_id, work["WorkloadUrl"])
                backoff.reset()
            except DiskFull as exc:
                log.warning("%s", exc)
                self._contact(True)
                stop.wait(30.0)
            except (QueueError, SpoolError, OSError, KeyError) as exc:
                log.warning("downloading workload %s failed: %s", work_id, exc)
                self.link.spool.remove("incoming", work_id)
                stop.wait(backoff.next_delay())

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

    def fetch(self, work_id: str, url: str) -> None:
        from cloudqueue.errors import FileTooLarge
        from cloudqueue.transfer import download_file
        spool = self.link.spool
        folder = spool.create_incoming(work_id)
        meta = WorkMeta(work_id, received_at=time.time())
        limit_mb = self.args.max_workload_mb
        try:
            # stops reading past the limit: a huge workload never fills the disk
            download_file(url, folder / WORKLOAD, what=f"download of workload {work_id}",
                          max_bytes=limit_mb * 2**20)
        except FileTooLarge as exc:
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


def main(argv=None) -> int:
    p = base_parser("qick-downloader")
    p.add_argument("--soccfg", default=None)
    p.add_argument("--queue-heartbeat", type=float, default=5.0)
    p.add_argument("--long-poll", type=int, default=20)
    p.add_argument("--poll", type=float, default=5.0)
    p.add_argument("--max-workload-mb", type=int, default=100)
    args = p.parse_args(argv)
    link = Link(args, "downloader")
    try:
        client, device_id = make_client(args.config, args.credentials)
    except (ConfigError, QueueError) as exc:
        log.error("%s", exc)
        return exitcodes.USAGE
    d = Downloader(link, client, device_id, args)
    workers = [threading.Thread(target=d.heartbeat_loop, name="heartbeat", daemon=True),
               threading.Thread(target=d.work_loop, name="work", daemon=True)]
    return link.serve(d.on_message, workers, device=device_id)


if __name__ == "__main__":
    run_main("downloader", main)
