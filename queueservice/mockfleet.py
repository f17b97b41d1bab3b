"""The mock devices inside ``qick-queue serve``: one real board daemon per mock device.

A mock device is the board daemon itself (``python -m supervisor.cli``, the
``qick-supervisor`` of a QICK board) with ``[executor] board = simulated``: its downloader,
executor and uploader reach this service over loopback like any board's, so a fix to the
daemon is a fix to the mocks. The daemon does its own work: limits, deadline, cancel,
progress, outcomes, restarts of its children and its ERROR reasons (a flapping child). This
module keeps only what the daemon cannot do for itself, and never imports qick or zmq:

- it writes, per device, ``<data>/mock/<DeviceId>/``: ``config`` (the daemon's settings:
  the mock defaults of ``queueservice.settings``, quick heartbeats; 0600), ``credentials``
  (a fresh client secret at each start, 0600), ``soccfg.json`` (a mirror: the soccfg the
  mirrored device uploaded), ``spool/``, ``run/`` and ``daemon.log``;
- a mirror whose device has not uploaded its soccfg yet is not started: it is marked
  ``ERROR`` with that reason until the soccfg is there;
- a daemon that exits is started again after a backoff (``qickbase.backoff``, with jitter;
  from the first delay again once a daemon stayed up ``STABLE_SECONDS``);
- a daemon that exits at once (within ``QUICK_EXIT_SECONDS``) ``QUICK_EXITS`` times in a
  row cannot run here (a broken install, say): the device is marked ``ERROR`` with the
  reason (the exit and the last line of its log) for as long as that lasts;
- a new mock device is picked up at once (``wake()``) or by the next sweep (1 s);
- a deleted device's daemon, and every daemon at ``stop()``, gets SIGTERM (it drains:
  the current workload may finish within its stop timeout), then SIGKILL after
  ``STOP_SECONDS``; a daemon a crashed service left running (``daemon.pid``) is stopped
  the same way before a new one starts on its folder.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import psutil

from cloudqueue.config import render_ini, write_atomically
from qickbase.backoff import Backoff
from queueservice import mockspec
from queueservice.clock import now_ms
from queueservice.settings import (MOCK_DEADLINE_MARGIN_SECONDS, MOCK_DEADLINE_SECONDS,
                                   MOCK_MEMORY_MB)

log = logging.getLogger("qick_queue.mock")
STABLE_SECONDS = 30.0
SWEEP_SECONDS = 1.0
QUICK_EXIT_SECONDS = 5.0
QUICK_EXITS = 3
#: the daemon's own drain (``stop_timeout_seconds``) and stop of its children fit in this
STOP_SECONDS = 10.0
#: AF_UNIX paths must be shorter than this (``boardcore.bus.MAX_IPC_PATH``; imported from
#: there it would bring zmq into the web process)
MAX_IPC_PATH = 100
PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
PID_FILE = "daemon.pid"
SYSTEMD_NOTIFY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def daemon_settings(*, spool: Path, run_dir: Path, board: Optional[str],
                    soccfg_json: Optional[Path], refresh_timeout: float,
                    deadline_seconds: float, memory_mb: int) -> dict[str, dict[str, str]]:
    """The board daemon's sections of a mock's config file. Heartbeats and retries are
    quick (the service is on loopback); the deadline and memory are the mock limits."""
    return {
        "supervisor": {
            "health": "", "spool": str(spool), "run_dir": str(run_dir),
            "heartbeat_seconds": "0.5", "heartbeat_timeout_seconds": "3",
            "backoff_base_seconds": "0.2", "backoff_max_seconds": "5",
            "restart_slow_seconds": "10", "stop_timeout_seconds": "3",
            "min_free_mb": "50", "done_max_age_days": "1", "done_max_mb": "100",
            # often (cheap on loopback: a new soccfg or a cancel is seen soon), and well
            # within the device's RefreshTimeout
            "queue_heartbeat_seconds": f"{max(0.5, min(1.0, refresh_timeout / 3)):g}",
            "long_poll_seconds": "2"},
        "executor": {
            "board": "simulated", "board_name": board or mockspec.DEFAULT_BOARD,
            "soccfg_json": str(soccfg_json) if soccfg_json else "",
            "deadline_seconds": f"{deadline_seconds:g}",
            "deadline_margin_seconds": f"{MOCK_DEADLINE_MARGIN_SECONDS:g}",
            "grace_seconds": "2",
            "address_space_mb": str(memory_mb), "network_isolation": "no"},
        "uploader": {"retry_base_seconds": "0.2", "retry_max_seconds": "5",
                     "scan_seconds": "0.5"},
    }


@dataclass
class _Daemon:
    """One mock device's board daemon, as the fleet sees it."""
    device_id: str
    folder: Path
    run_dir: Optional[Path] = None  # the bus's folder (a short one under /tmp if need be)
    proc: Optional[subprocess.Popen] = None
    started: float = 0.0
    not_before: float = 0.0
    attempt: int = 0                # exits since it last stayed up STABLE_SECONDS
    starts: int = 0
    quick_exits: int = 0            # exits within QUICK_EXIT_SECONDS of the start, in a row
    error: Optional[str] = None     # why the device is marked ERROR (None: it is not)
    marked_at: Optional[float] = None  # when the ERROR mark was last written

    @property
    def log_path(self) -> Path:
        return self.folder / "daemon.log"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class MockFleet:
    def __init__(self, identities: Any, read_config: Callable[[str], Optional[str]], api_url: str,
                 root_url: str, root: Path, *, python: str = sys.executable,
                 deadline_seconds: float = MOCK_DEADLINE_SECONDS,
                 memory_mb: int = MOCK_MEMORY_MB):
        """``read_config(device_id)``: the soccfg that device uploaded, None if none
        (``FileStore.read_text("configs/<id>")``); ``root``: ``<data>/mock``."""
        self.identities, self.read_config = identities, read_config
        self.api_url, self.root_url = api_url, root_url
        self.root = Path(root)
        self.python = python
        self.deadline_seconds, self.memory_mb = deadline_seconds, memory_mb
        self.backoff = Backoff(base=0.5, cap=30.0)
        self.daemons: dict[str, _Daemon] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self._thread = threading.Thread(target=self._loop, name="mock-fleet", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            daemons = list(self.daemons.values())
        _stop_all([d for d in daemons if d.running()], timeout)
        for daemon in daemons:
            _remove_short_run_dir(daemon)

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
        """Start the daemons of new mock devices; restart the ones that exited (with
        backoff); stop the daemons of deleted ones."""
        rows = self.identities.mock_devices()
        self._retire(set(self.daemons) - {row["device_id"] for row in rows})
        for row in rows:
            device_id = row["device_id"]
            with self._lock:
                daemon = self.daemons.setdefault(device_id,
                                                 _Daemon(device_id, self.root / device_id))
            if daemon.running():
                if now - daemon.started >= STABLE_SECONDS:
                    daemon.attempt = 0
                if now - daemon.started >= QUICK_EXIT_SECONDS:
                    daemon.quick_exits, daemon.error = 0, None  # it runs: it says the rest
                continue
            if daemon.proc is not None and daemon.not_before == 0.0:
                self._exited(daemon, now)
            waiting = self._missing_soccfg(row)
            if waiting and daemon.error != waiting:
                daemon.error, daemon.marked_at = waiting, None
            if daemon.error and (daemon.marked_at is None or now - daemon.marked_at >=
                                 max(1.0, row["refresh_timeout"] / 3)):
                self._mark_error(daemon, now)
            if waiting or now < daemon.not_before or self._stop.is_set():
                continue
            self._spawn(daemon, row, now)

    def _exited(self, daemon: _Daemon, now: float) -> None:
        """It just exited: say why, and wait before starting it again."""
        assert daemon.proc is not None
        reason = _exit_reason(daemon.proc.returncode)
        delay = self.backoff.delay(daemon.attempt)
        daemon.attempt += 1
        log.warning("mock device %s: board daemon exited (%s); restarting in %.1f s",
                    daemon.device_id, reason, delay)
        daemon.not_before = now + delay
        quick = now - daemon.started < QUICK_EXIT_SECONDS
        daemon.quick_exits = daemon.quick_exits + 1 if quick else 0
        if daemon.quick_exits >= QUICK_EXITS:
            words = _last_words(daemon.log_path)
            hint = "; install what mock devices need: pip install 'qick-queue[server]'" \
                if "ImportError" in words or "ModuleNotFoundError" in words else ""
            daemon.error = (
                f"the mock board's daemon cannot start: it exited at once "
                f"{daemon.quick_exits} times in a row ({reason}){words}{hint}; the admin "
                f"finds its log in the service's data folder (mock/{daemon.device_id}/)")
            daemon.marked_at = None

    def _missing_soccfg(self, row: dict) -> Optional[str]:
        """Why a mirror cannot start yet (its device has not uploaded a soccfg), or None."""
        mirror = mockspec.mirror_of(row)
        if mirror is None or self.read_config(mirror) is not None:
            return None
        return (f"mirrored device {mirror} has not uploaded its configuration yet: start its "
                "board daemon once")

    def _retire(self, device_ids: set[str]) -> None:
        """Stop the daemons of these (deleted) devices and remove their folders."""
        for device_id in device_ids:
            with self._lock:
                daemon = self.daemons.pop(device_id)
            if daemon.running():
                _stop_all([daemon], STOP_SECONDS)
                log.info("mock device %s deleted: its board daemon stopped", device_id)
            _remove_short_run_dir(daemon)
            shutil.rmtree(daemon.folder, ignore_errors=True)

    def _mark_error(self, daemon: _Daemon, now: float) -> None:
        """Show the device as ERROR with the reason (kept fresh while it lasts)."""
        daemon.marked_at = now
        self.identities.mark_status(
            daemon.device_id, "ERROR",
            {"State": "ERROR", "Reason": daemon.error, "Mock": True, "Simulated": True,
             "CurrentWork": None}, now_ms())

    # -- start -------------------------------------------------------------------------
    def _write_files(self, daemon: _Daemon, row: dict) -> tuple[Path, Path]:
        """The daemon's config and credentials (a fresh secret) in its folder."""
        folder = daemon.folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        spec = mockspec.spec(row) or {}
        soccfg = None
        if spec.get("MirrorOf"):
            soccfg = folder / "soccfg.json"
            text = self.read_config(spec["MirrorOf"])
            if text is None:
                raise FileNotFoundError(f"device {spec['MirrorOf']} has no configuration")
            write_atomically(soccfg, text)
        if daemon.run_dir is None:
            daemon.run_dir = _run_dir(folder)
        sections = {"service": {"api_endpoint": self.api_url, "oauth_endpoint": self.root_url},
                    "device": {"id": daemon.device_id, "name": row["name"]}}
        sections.update(daemon_settings(
            spool=folder / "spool", run_dir=daemon.run_dir, board=spec.get("Board"),
            soccfg_json=soccfg, refresh_timeout=row["refresh_timeout"],
            deadline_seconds=self.deadline_seconds, memory_mb=self.memory_mb))
        config, credentials = folder / "config", folder / "credentials"
        write_atomically(config, render_ini(sections))
        secret = self.identities.new_secret(daemon.device_id)
        write_atomically(credentials, render_ini({"credentials": {"id": row["client_id"],
                                                               "secret": secret}}))
        return config, credentials

    def _spawn(self, daemon: _Daemon, row: dict, now: float) -> None:
        _end_leftover(daemon.folder)
        # the service's own systemd unit (if any) is not the daemon's to notify
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_NOTIFY}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH"))
                                            if p)
        try:
            config, credentials = self._write_files(daemon, row)
            with open(daemon.log_path, "ab") as log_file:
                proc = subprocess.Popen(
                    [self.python, "-m", "supervisor.cli", "--config", str(config),
                     "--credentials", str(credentials)], stdin=subprocess.DEVNULL,
                    stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=daemon.folder,
                    start_new_session=True)
        except OSError as exc:
            log.error("mock device %s: cannot start its board daemon: %s",
                      daemon.device_id, exc)
            daemon.not_before = now + self.backoff.delay(daemon.attempt)
            daemon.attempt += 1
            return
        (daemon.folder / PID_FILE).write_text(f"{proc.pid}\n")
        with self._lock:
            daemon.proc, daemon.started, daemon.not_before = proc, now, 0.0
            daemon.starts += 1
        log.info("mock device %s: board daemon started (pid %d)", daemon.device_id, proc.pid)


def _end_leftover(folder: Path) -> None:
    """Stop a daemon a crashed service left running on this folder (the pid it wrote, if
    that process still runs on this folder's config): two daemons must never share a
    spool. SIGTERM (it drains), then SIGKILL."""
    try:
        proc = psutil.Process(int((folder / PID_FILE).read_text()))
        if str(folder / "config") not in proc.cmdline():
            return  # the pid was reused by another process
        log.warning("mock device %s: stopping the board daemon (pid %d) a previous run of "
                    "the service left running", folder.name, proc.pid)
        proc.terminate()
        try:
            proc.wait(STOP_SECONDS)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_SECONDS)
    except (OSError, ValueError, psutil.Error):
        return  # no pid file, or that process is gone


def _run_dir(folder: Path) -> Path:
    """``<folder>/run``, or a private folder under the temp dir when the bus socket's path
    there would be too long for AF_UNIX (a deep data folder)."""
    run_dir = folder / "run"
    if len(str(run_dir / "bus")) < MAX_IPC_PATH:
        return run_dir
    return Path(tempfile.mkdtemp(prefix="qick-mock-"))


def _remove_short_run_dir(daemon: _Daemon) -> None:
    """The temp-dir run folder of ``_run_dir`` (the one in the data folder stays)."""
    if daemon.run_dir is not None and daemon.folder not in daemon.run_dir.parents:
        shutil.rmtree(daemon.run_dir, ignore_errors=True)


def _stop_all(daemons: list[_Daemon], timeout: float) -> None:
    """SIGTERM each daemon (it drains and stops its children), SIGKILL what is left after
    ``timeout`` seconds."""
    for daemon in daemons:
        _signal(daemon.proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for daemon in daemons:
        assert daemon.proc is not None
        try:
            daemon.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("mock device %s: board daemon did not stop in %.0f s: SIGKILL",
                        daemon.device_id, timeout)
            _signal(daemon.proc, signal.SIGKILL)
            daemon.proc.wait()


def _signal(proc: Optional[subprocess.Popen], sig: int) -> None:
    """Signal the daemon's process group (its children lead their own sessions: the
    daemon stops them)."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _last_words(path: Path) -> str:
    """``: <the last line of the daemon's log>`` (what a crash printed last), or ""."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return f": {lines[-1][:150]}" if lines else ""


def _exit_reason(code: Optional[int]) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
