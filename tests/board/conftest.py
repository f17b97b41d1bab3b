"""Fixtures of the board daemon's tests: a real supervisor process (with its real children)
against the real embedded queue service, and small workloads for the simulated board."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def make_workload(path: Path, programs: int = 1, reps: int = 1,
                  last_reps: Optional[int] = None) -> Path:
    """A small valid workload for the simulated zcu216-v2 board (``last_reps``: the last
    program's, e.g. a long one after short ones)."""
    logging.getLogger("qick").setLevel(logging.ERROR)
    from executor.runner import open_board
    from qickwork.workload import entry_for, write_workload
    from tests.qick.programs import SweepV2
    board = open_board("simulated", "zcu216-v2", seed=1)
    entries = []
    for i in range(programs):
        n = last_reps if last_reps is not None and i == programs - 1 else reps
        prog = SweepV2(board.soccfg, reps=n, final_delay=1.0,
                       cfg={"freq": 100.0 + i, "ro_len": 0.5})
        entries.append(entry_for(prog, board.soccfg))
    write_workload(path, entries)
    return path


class BoardDaemon:
    """``qick-supervisor`` in a subprocess, with its config, spool and log."""

    def __init__(self, base: Path, service: Any, device: Optional[dict] = None,
                 **sections: Dict[str, Any]):
        """``device``: an added device (``{DeviceId, ClientId, ClientSecret}``) to run as;
        by default a new one is added."""
        from cloudqueue.auth import ApiKeyAuth
        from cloudqueue.client import QueueClient
        from cloudqueue.config import write_atomically
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.service = service
        self.admin = QueueClient(service.url, ApiKeyAuth(service.admin_key))
        dev = device or self.admin.add_device("board-under-test", refresh_timeout=60)
        self.device_id = dev["DeviceId"]
        self.run_dir = Path(tempfile.mkdtemp(prefix="qb", dir="/tmp"))
        self.spool = base / "spool"
        self.log_path = base / "supervisor.log"
        self.config = base / "config"
        self.credentials = base / "credentials"
        settings = {
            "supervisor": {"health": "127.0.0.1:0", "spool": str(self.spool),
                           "run_dir": str(self.run_dir), "heartbeat_seconds": "0.2",
                           "heartbeat_timeout_seconds": "3", "queue_heartbeat_seconds": "0.5",
                           "long_poll_seconds": "2", "backoff_base_seconds": "0.1",
                           "backoff_max_seconds": "0.5", "stop_timeout_seconds": "10",
                           "min_free_mb": "1"},
            "executor": {"board": "simulated", "lock_file": str(self.run_dir / "board.lock"),
                         "grace_seconds": "1"},
            "uploader": {"retry_base_seconds": "0.2", "retry_max_seconds": "1",
                         "scan_seconds": "0.5"},
        }
        for section, values in sections.items():
            settings.setdefault(section, {}).update(values)
        lines = ["[service]", f"api_endpoint = {service.url}", f"oauth_endpoint = {service.root}",
                 "[device]", f"id = {self.device_id}", "name = board-under-test"]
        for section, values in settings.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {v}" for k, v in values.items()]
        self.config.write_text("\n".join(lines) + "\n")
        write_atomically(self.credentials, f"[credentials]\nid = {dev['ClientId']}\n"
                                           f"secret = {dev['ClientSecret']}\n")
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    def start(self, env: Optional[dict] = None, wait_ready: bool = True) -> "BoardDaemon":
        self._log_from = len(self.log())  # a restart reads only its own lines for the port
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.cli", "--config", str(self.config),
             "--credentials", str(self.credentials)], cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, env=env or dict(os.environ), start_new_session=True)
        log.close()
        self.port = None
        self.port = int(wait_for(self._port, 20, what="the health endpoint"))
        if wait_ready:
            wait_for(lambda: self.status()["queue"]["ok"] and
                     all(c["state"] == "RUNNING" for c in self.status()["children"].values()),
                     30, what="all children up and the queue reached")
        return self

    def _port(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"supervisor exited {self.proc.returncode}:\n{self.log()}")
        found = re.findall(r"health on http://127\.0\.0\.1:(\d+)/",
                           self.log()[self._log_from:])
        return found[-1] if found and (self.port is None) else None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    def status(self) -> dict:
        return json.loads(self.get("/status")[1])

    def child_pid(self, name: str) -> int:
        return wait_for(lambda: self.status()["children"][name]["pid"]
                        if self.status()["children"][name]["state"] == "RUNNING" else None,
                        30, what=f"{name} running")

    def submit(self, path: Path) -> str:
        from cloudqueue.transfer import upload_file
        answer = self.admin.create_workload(self.device_id)
        upload_file(answer["UploadUrl"], path)
        return answer["WorkId"]

    def wait_terminal(self, work_id: str, timeout: float = 30):
        return wait_for(lambda: (lambda w: w if w.terminal else None)(
            self.admin.get_workload(work_id)), timeout, what=f"workload {work_id} to finish")

    def stop(self, timeout: float = 20) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("the supervisor did not stop on SIGTERM:\n" + self.log())

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture
def board_factory(tmp_path, queue_service):
    made = []

    def factory(**sections) -> BoardDaemon:
        daemon = BoardDaemon(tmp_path / f"board{len(made)}", queue_service, **sections)
        made.append(daemon)
        return daemon

    yield factory
    for daemon in made:
        daemon.cleanup()


@pytest.fixture
def workload(tmp_path) -> Path:
    return make_workload(tmp_path / "small.gz")
