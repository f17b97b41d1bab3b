"""The worker of one mock device: the ordinary device protocol over HTTP, a simulated board.

    python -m mockboard.worker --api URL --oauth ROOT --device-id ID --client-id CID  (secret on stdin)

Started and restarted by ``qick-queue serve`` (``queueservice.mockfleet``). It
- reads its own device record: ``Mock.Board`` names a simulated board, ``MirrorOf`` a real
  device whose uploaded soccfg it runs on (``MirrorConfigurationUrl``); until that device has
  uploaded one, it heartbeats ``ERROR`` and says why;
- heartbeats (status, Health with ``CurrentWork`` progress) and uploads its soccfg;
- long-polls for work and runs each workload in a ``mockboard.run`` child with a deadline and
  a memory limit; reports FAILED with the runner's message (and partial results), CANCELLED
  when asked, or uploads the results;
- stops when its parent (the service) is gone, or on SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cloudqueue.auth import DeviceTokenAuth
from cloudqueue.client import QueueClient
from cloudqueue.errors import QueueError
from cloudqueue.transfer import download_file, fetch_json, upload_file

log = logging.getLogger("mockboard")
#: a cancelled run stops between rounds; one that does not within this is killed
CANCEL_GRACE_SECONDS = 5.0


def runtime_missing() -> str | None:
    """Why this Python cannot run the simulated board (qick, numpy, h5py missing or
    broken), or None when it can."""
    try:
        import executor.runner  # noqa: F401  (simboard: numpy, qick; qickwork: h5py)
    except ImportError as exc:
        return (f"the mock board cannot run in the service's Python: {exc}. Install the "
                "service with what mock devices need: pip install 'qick-queue[server]'")
    return None


class MockWorker:
    def __init__(self, client: QueueClient, device_id: str, workdir: Path,
                 args: argparse.Namespace):
        self.client, self.device_id, self.workdir, self.args = client, device_id, workdir, args
        self.stop = threading.Event()
        self.beat_now = threading.Event()  # progress moved: tell the service soon
        # not ONLINE before the board is loaded: a worker that cannot run takes no work
        self.status, self.reason = "OFFLINE", "starting"
        self.current: dict | None = None
        self.cancels: set[str] = set()
        self.soccfg: dict | None = None
        self.soccfg_sent = False
        self.parent = os.getppid()

    # -- heartbeat ---------------------------------------------------------------------
    def health(self) -> dict:
        firmware = None
        if self.soccfg is not None:
            from qickwork.firmware import describe, fingerprint
            firmware = {"board": describe(self.soccfg), "board_kind": "simulated",
                        "fingerprint": fingerprint(self.soccfg), "network": False}
        return {"State": self.status, "Reason": self.reason, "Mock": True, "Simulated": True,
                "CurrentWork": dict(self.current) if self.current else None,
                "Firmware": firmware}

    def heartbeat(self) -> None:
        answer = self.client.heartbeat(self.device_id, self.status, health=self.health())
        # the service lists cancel-requested work until the device reports it: the latest
        # answer is the whole truth (and the set does not grow for the worker's life)
        self.cancels = set(answer.get("CancelRequested") or [])
        if self.soccfg is not None and not self.soccfg_sent and answer.get("UploadUrl"):
            upload_file(answer["UploadUrl"], self.workdir / "soccfg.json", what="soccfg upload")
            self.soccfg_sent = True

    def heartbeat_loop(self) -> None:
        while not self.stop.is_set():
            if os.getppid() != self.parent:
                log.warning("the service is gone: stopping")
                self.stop.set()
                self.beat_now.set()
                return
            try:
                self.heartbeat()
            except QueueError as exc:
                log.warning("heartbeat failed: %s", exc)
            self.beat_now.wait(self.args.heartbeat)
            self.beat_now.clear()
            self.stop.wait(0.2)  # at most five heartbeats a second

    # -- the board ---------------------------------------------------------------------
    def load_board(self) -> bool:
        """Find this mock's soccfg; False (and ERROR with a reason) while it is not there
        or this Python cannot run the simulated board."""
        missing = runtime_missing()
        if missing:
            self.status, self.reason = "ERROR", missing
            return False
        device = self.client.get_device(self.device_id)
        board, mirror = device.extra.get("MockBoard"), device.extra.get("MirrorOf")
        if mirror:
            url = device.extra.get("MirrorConfigurationUrl")
            if not url:
                self.status = "ERROR"
                self.reason = (f"mirrored device {mirror} has not uploaded its configuration "
                               "yet: start its board daemon once")
                return False
            cfg = fetch_json(url, session=self.client.session,
                             what=f"download the configuration of device {mirror}")
        else:
            from executor.boards import board_config
            cfg = board_config(board or "zcu216-v2")
        path = self.workdir / "soccfg.json"
        path.write_text(json.dumps(cfg))
        self.soccfg, self.status, self.reason = cfg, "ONLINE", ""
        return True

    # -- work --------------------------------------------------------------------------
    def work_loop(self) -> None:
        while not self.stop.is_set():
            try:
                if self.soccfg is None and not self.load_board():
                    self.stop.wait(2.0)
                    continue
                work = self.client.get_work(self.device_id, wait_seconds=2)
            except QueueError as exc:
                log.warning("asking for work failed: %s", exc)
                self.stop.wait(1.0)
                continue
            if work is not None:
                try:
                    self.run(work["WorkId"], work["WorkloadUrl"])
                except QueueError as exc:  # the work stays EXECUTING: handed back later
                    log.warning("workload %s: %s", work.get("WorkId"), exc)
                    self.stop.wait(1.0)
                finally:
                    self.current, self.status = None, "ONLINE"

    def run(self, work_id: str, url: str) -> None:
        workload = self.workdir / f"{work_id}.workload"
        results = self.workdir / f"{work_id}.h5"
        results.unlink(missing_ok=True)
        download_file(url, workload, session=self.client.session,
                      what=f"download workload {work_id}")
        self.status = "BUSY"
        self.current = {"work_id": work_id, "programs_done": 0, "programs_total": 0,
                        "seconds": 0.0}
        started = time.monotonic()
        ended, outcome = self._supervise(work_id, workload, results, started)
        try:
            self._report(work_id, ended, outcome, results, time.monotonic() - started)
        finally:
            workload.unlink(missing_ok=True)
            results.unlink(missing_ok=True)

    def _supervise(self, work_id: str, workload: Path, results: Path,
                   started: float) -> tuple[str, dict | None]:
        """Run the child; answers (how it ended, its outcome line or None)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "mockboard.run", str(workload), str(results),
             str(self.workdir / "soccfg.json"), "--memory-mb", str(self.args.memory_mb),
             "--work-id", work_id, "--device", self.device_id],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        found: dict[str, Any] = {}

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                word, _, rest = line.strip().partition(" ")
                if word == "progress" and self.current is not None:
                    done, total = (int(x) for x in rest.split())
                    self.current.update(programs_done=done, programs_total=total,
                                        seconds=round(time.monotonic() - started, 2))
                    self.beat_now.set()
                elif word == "outcome":
                    found["outcome"] = json.loads(rest)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = started + self.args.deadline_seconds
        ended = "exited"
        while proc.poll() is None:
            if time.monotonic() > deadline:
                ended = "deadline"
            elif work_id in self.cancels:
                ended = "cancelled"
            elif self.stop.is_set():
                ended = "stopping"
            if ended == "cancelled":
                # asked to stop: the run ends between rounds and keeps the programs done
                proc.terminate()
                try:
                    proc.wait(CANCEL_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            if ended != "exited":
                proc.kill()
                break
            try:
                proc.wait(0.1)
            except subprocess.TimeoutExpired:
                pass
        proc.wait()
        reader.join(5)
        if ended == "exited" and "outcome" not in found:
            code = proc.returncode
            ended = (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
        return ended, found.get("outcome")

    def _report(self, work_id: str, ended: str, outcome: dict | None, results: Path,
                seconds: float) -> None:
        c = self.client
        done = (self.current or {}).get("programs_done", 0)
        total = (self.current or {}).get("programs_total", 0)
        if ended == "stopping":
            return  # the service hands the work back when this mock starts again
        try:
            self.heartbeat()  # the last progress, before the outcome ends EXECUTING
        except QueueError as exc:
            log.warning("heartbeat failed: %s", exc)
        if ended == "cancelled" or (outcome or {}).get("status") == "CANCELLED":
            if outcome is None and done > 0 and results.exists():
                outcome = self._killed_on_cancel(work_id, results, done, total)
            kept = (outcome or {}).get("status") == "CANCELLED" and \
                (outcome or {}).get("programs_done", 0) > 0 and results.exists()
            if not kept:
                c.report_outcome(self.device_id, work_id, "CANCELLED")
                return
            answer = c.report_outcome(self.device_id, work_id, "CANCELLED",
                                      error_message=outcome.get("error_message"),
                                      partial_results=True, device_seconds=seconds,
                                      programs_done=outcome["programs_done"])
            upload_file(answer["UploadUrl"], results, session=c.session,
                        what=f"upload partial results {work_id} (CANCELLED)")
            return
        if ended == "deadline":
            c.report_outcome(self.device_id, work_id, "FAILED", error_kind="deadline",
                             error_message=f"the run took longer than the mock device's "
                             f"deadline of {self.args.deadline_seconds:g} s ({done} of {total} "
                             "programs done): make the workload smaller", partial_results=False)
            return
        if outcome is None:
            c.report_outcome(self.device_id, work_id, "FAILED", error_kind="crashed",
                             error_message=f"the run on the mock board died ({ended}) after "
                             f"{done} of {total} programs: it may need more than the mock's "
                             f"{self.args.memory_mb} MB of memory", partial_results=False)
            return
        status = outcome["status"]
        if status == "DONE":
            url = c.results_upload_url(self.device_id, work_id, device_seconds=seconds)
            upload_file(url, results, session=c.session, what=f"upload results {work_id}")
            return
        partial = outcome.get("programs_done", 0) > 0 and results.exists()
        answer = c.report_outcome(self.device_id, work_id, "FAILED",
                                  error_message=outcome.get("error_message") or "the run failed",
                                  error_kind=outcome.get("error_kind") or "device_error",
                                  partial_results=partial, device_seconds=seconds)
        if partial:
            upload_file(answer["UploadUrl"], results, session=c.session,
                        what=f"upload partial results {work_id}")

    @staticmethod
    def _killed_on_cancel(work_id: str, results: Path, done: int,
                          total: int) -> dict | None:
        """A cancelled run that did not stop within the grace period was killed: the
        programs it finished are in its results file (flushed one by one), which still says
        RUNNING. Finish it as CANCELLED; None when it cannot be opened (torn by the kill)."""
        from qickwork.results import record_interruption
        message = (f"cancelled on request; the run did not stop within "
                   f"{CANCEL_GRACE_SECONDS:g} s and was stopped by force after {done} of "
                   f"{total} programs")
        try:
            record_interruption(results, "CANCELLED", "cancelled", message)
        except OSError as exc:
            log.warning("workload %s: its partial results cannot be read (%s)", work_id, exc)
            return None
        return {"status": "CANCELLED", "programs_done": done, "error_message": message}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mockboard.worker",
                                description="one mock device (run by qick-queue serve)")
    p.add_argument("--api", required=True, help="the API endpoint")
    p.add_argument("--oauth", required=True, help="the service root (POST /oauth2/token)")
    p.add_argument("--device-id", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--heartbeat", type=float, default=5.0)
    p.add_argument("--deadline-seconds", type=float, default=300.0)
    p.add_argument("--memory-mb", type=int, default=2048)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s mock %(process)d: %(message)s")
    secret = sys.stdin.readline().strip()
    if not secret:
        print("mockboard.worker: give the device's client secret on stdin", file=sys.stderr)
        return 2
    auth = DeviceTokenAuth.for_endpoint(args.oauth, args.client_id, secret)
    client = QueueClient(args.api, auth, timeout=30)
    with tempfile.TemporaryDirectory(prefix="qick-mock-") as tmp:
        worker = MockWorker(client, args.device_id, Path(tmp), args)
        def on_term(*_: Any) -> None:
            worker.stop.set()
            worker.beat_now.set()
        signal.signal(signal.SIGTERM, on_term)
        beat = threading.Thread(target=worker.heartbeat_loop, daemon=True)
        beat.start()
        log.info("mock device %s started", args.device_id)
        worker.work_loop()
        beat.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
