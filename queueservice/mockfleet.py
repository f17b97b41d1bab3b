"""The supervisor of the mock devices' workers, inside ``qick-queue serve``.

One worker subprocess (``python -m mockboard.worker``) per mock device. The worker is an
ordinary device client over HTTP: it logs in with OAuth2 client credentials (a fresh secret
made at each start and handed over on its stdin, so no secret is kept at rest or shown in
``ps``), heartbeats, long-polls and runs workloads on a simulated board. This module only
spawns, watches and stops; it never imports qick.

- a worker that exits is started again after a backoff (0.5 s doubling to 30 s; back to
  0.5 s once a worker stayed up 30 s);
- a worker that exits at once (within ``QUICK_EXIT_SECONDS``) ``QUICK_EXITS`` times in a
  row cannot run here (a broken install, say): the device is marked ``ERROR`` with the
  reason (the exit and the last line of its log) for as long as that lasts, so users see
  why their work waits instead of an ``ONLINE`` device that never takes it. A worker that
  starts but lacks what a run needs (qick, h5py, numpy) stays up and heartbeats ``ERROR``
  itself (``mockboard.worker``);
- a new mock device is picked up at once (``wake()``) or by the next sweep (1 s);
- ``stop()`` sends SIGTERM to each worker's process group (the worker and its run), waits,
  then SIGKILL.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("qick_queue.mock")
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
STABLE_SECONDS = 30.0
SWEEP_SECONDS = 1.0
QUICK_EXIT_SECONDS = 5.0
QUICK_EXITS = 3


@dataclass
class _Worker:
    device_id: str
    proc: subprocess.Popen | None = None
    started: float = 0.0
    not_before: float = 0.0
    backoff: float = BACKOFF_FIRST
    starts: int = 0
    quick_exits: int = 0            # exits within QUICK_EXIT_SECONDS of the start, in a row
    error: str | None = None        # why the device is marked ERROR (None: it is not)
    marked_at: float | None = None  # when the ERROR mark was last written


class MockFleet:
    def __init__(self, identities: Any, api_url: str, root_url: str, log_dir: Path, *,
                 python: str = sys.executable, deadline_seconds: float = 300.0,
                 memory_mb: int = 2048):
        self.identities = identities
        self.api_url, self.root_url = api_url, root_url
        self.log_dir = Path(log_dir)
        self.python = python
        self.deadline_seconds, self.memory_mb = deadline_seconds, memory_mb
        self.workers: dict[str, _Worker] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="mock-fleet", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            procs = [w.proc for w in self.workers.values() if w.proc and w.proc.poll() is None]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()

    def pids(self) -> dict[str, int]:
        """Running workers by device id (health pages, tests)."""
        with self._lock:
            return {d: w.proc.pid for d, w in self.workers.items()
                    if w.proc is not None and w.proc.poll() is None}

    # -- the loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep(time.monotonic())
            except Exception:  # keep supervising: one bad sweep must not stop the next
                log.exception("mock fleet sweep failed")
            self._wake.wait(SWEEP_SECONDS)
            self._wake.clear()

    def sweep(self, now: float) -> None:
        """Start workers of new mock devices; restart the ones that exited (with backoff);
        stop the workers of deleted ones."""
        rows = self.identities.mock_devices()
        self._retire(set(self.workers) - {row["device_id"] for row in rows})
        for row in rows:
            with self._lock:
                worker = self.workers.setdefault(row["device_id"], _Worker(row["device_id"]))
            proc = worker.proc
            if proc is not None and proc.poll() is None:
                if now - worker.started >= STABLE_SECONDS:
                    worker.backoff = BACKOFF_FIRST
                if now - worker.started >= QUICK_EXIT_SECONDS:
                    worker.quick_exits, worker.error = 0, None  # it runs: it says the rest
                continue
            if proc is not None and worker.not_before == 0.0:
                # it just exited: say why, and wait before starting it again
                log.warning("mock device %s: worker exited (%s); restarting in %.1f s",
                            worker.device_id, _exit_reason(proc.returncode), worker.backoff)
                worker.not_before = now + worker.backoff
                worker.backoff = min(BACKOFF_CAP, worker.backoff * 2)
                quick = now - worker.started < QUICK_EXIT_SECONDS
                worker.quick_exits = worker.quick_exits + 1 if quick else 0
                if worker.quick_exits >= QUICK_EXITS:
                    worker.error = (
                        f"the mock board's worker cannot start: it exited at once "
                        f"{worker.quick_exits} times in a row ({_exit_reason(proc.returncode)})"
                        f"{_last_words(self.log_dir / f'{worker.device_id}.log')}; the admin "
                        "finds its log in the service's data folder (mock/)")
                    worker.marked_at = None
            if worker.error and (worker.marked_at is None or now - worker.marked_at >=
                                 max(1.0, row["refresh_timeout"] / 3)):
                self._mark_error(worker, now)
            if now < worker.not_before or self._stop.is_set():
                continue
            self._spawn(worker, row, now)

    def _retire(self, device_ids: set[str], timeout: float = 5.0) -> None:
        """Stop the workers of these (deleted) devices: SIGTERM, then SIGKILL."""
        for device_id in device_ids:
            with self._lock:
                worker = self.workers.pop(device_id)
            proc = worker.proc
            if proc is None or proc.poll() is not None:
                continue
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            log.info("mock device %s deleted: its worker stopped", device_id)

    def _mark_error(self, worker: _Worker, now: float) -> None:
        """Show the device as ERROR with the reason (kept fresh while it lasts)."""
        worker.marked_at = now
        self.identities.mark_status(
            worker.device_id, "ERROR",
            {"State": "ERROR", "Reason": worker.error, "Mock": True, "Simulated": True,
             "CurrentWork": None}, int(time.time() * 1000))

    def _spawn(self, worker: _Worker, row: dict, now: float) -> None:
        secret = self.identities.new_secret(worker.device_id)
        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"]
                                            if env.get("PYTHONPATH") else "")
        args = [self.python, "-m", "mockboard.worker", "--api", self.api_url,
                "--oauth", self.root_url, "--device-id", worker.device_id,
                "--client-id", row["client_id"],
                "--deadline-seconds", str(self.deadline_seconds),
                "--memory-mb", str(self.memory_mb),
                "--heartbeat", str(max(0.5, min(5.0, row["refresh_timeout"] / 3)))]
        log_file = open(self.log_dir / f"{worker.device_id}.log", "ab")
        try:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=log_file,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        except OSError as exc:
            log.error("mock device %s: cannot start its worker: %s", worker.device_id, exc)
            worker.not_before = now + worker.backoff
            worker.backoff = min(BACKOFF_CAP, worker.backoff * 2)
            return
        finally:
            log_file.close()
        try:
            assert proc.stdin is not None
            proc.stdin.write(secret.encode() + b"\n")
            proc.stdin.close()
        except OSError:
            pass  # it died at once: the next sweep sees it
        with self._lock:
            worker.proc, worker.started, worker.not_before = proc, now, 0.0
            worker.starts += 1
        log.info("mock device %s: worker started (pid %d)", worker.device_id, proc.pid)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _last_words(path: Path) -> str:
    """``: <the last line of the worker's log>`` (what a crash printed last), or ""."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return f": {lines[-1][:200]}" if lines else ""


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
