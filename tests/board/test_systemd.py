"""qick.service passes systemd-analyze verify silently; the daemon speaks sd_notify properly
to a fake NOTIFY_SOCKET (a real AF_UNIX datagram socket), and a stalled loop stops the pings."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_unit_passes_systemd_analyze_verify_with_nothing_printed(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install -y systemd"
    unit = (ROOT / "qick.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "Restart=on-failure" in unit
    # the binary is installed by pip on a board; here point ExecStart at this checkout
    unit = unit.replace("ExecStart=/usr/local/share/pynq-venv/bin/qick-supervisor",
                        f"ExecStart={sys.executable} -m supervisor.cli")
    (tmp_path / "qick.service").write_text(unit)
    out = subprocess.run([analyze, "verify", str(tmp_path / "qick.service")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stdout + out.stderr


class FakeSystemd:
    """A NOTIFY_SOCKET: collects every datagram the daemon sends."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="qn", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):  # timestamps on arrival, as systemd sees them
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except (socket.timeout, OSError):
                continue
            self.messages.append((time.monotonic(), data))

    def drain(self):
        return list(self.messages)

    def has(self, text):
        return any(text in m for _, m in self.drain())

    def pings(self, since=0.0):
        return [t for t, m in self.drain() if "WATCHDOG=1" in m and t >= since]

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_ready_watchdog_status_stopping_and_a_stalled_loop(board_factory):
    fake = FakeSystemd()
    board = board_factory()
    try:
        env = dict(os.environ, NOTIFY_SOCKET=fake.path, WATCHDOG_USEC="600000")  # ping /0.2 s
        board.start(env=env)
        wait_for(lambda: fake.has("READY=1"), 20, what="READY=1")
        ready_msg = next(m for _, m in fake.messages if "READY=1" in m)
        assert "STATUS=ONLINE" in ready_msg
        # READY came only after all three children said hello
        assert all(c["state"] == "RUNNING" for c in board.status()["children"].values())
        # regular pings (their period, a third of WATCHDOG_USEC, is asserted on the
        # supervisor's step with a fake clock: test_supervisor_step.py)
        start = time.monotonic()
        wait_for(lambda: len(fake.pings(start)) >= 4, 10, what="regular WATCHDOG=1")
        # a stalled main loop: no more pings
        os.kill(board.proc.pid, signal.SIGSTOP)
        try:
            fake.drain()
            stalled = time.monotonic()
            time.sleep(1.0)  # observing silence needs a window of time
            assert fake.pings(stalled) == []
        finally:
            os.kill(board.proc.pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_for(lambda: fake.pings(resumed), 5, what="pings after the loop resumed")
        assert board.stop() == 0
        assert fake.has("STOPPING=1")
    finally:
        fake.close()


def test_an_unresponsive_child_is_replaced_and_the_pings_go_on(board_factory):
    """The pause of the pings while its heartbeat is late is asserted on the supervisor's
    step with a fake clock (test_supervisor_step.py); here, the real processes."""
    fake = FakeSystemd()
    board = board_factory()
    try:
        env = dict(os.environ, NOTIFY_SOCKET=fake.path, WATCHDOG_USEC="600000")
        board.start(env=env)
        pid = board.child_pid("uploader")
        os.kill(pid, signal.SIGSTOP)  # hung: alive, but no heartbeats
        # heartbeat timeout is 3 s: past it the uploader is replaced
        wait_for(lambda: board.status()["children"]["uploader"]["restarts"] >= 1, 15,
                 what="the hung uploader to be replaced")
        new_pid = board.child_pid("uploader")
        assert new_pid != pid
        after = time.monotonic()
        wait_for(lambda: fake.pings(after), 5, what="pings again")
    finally:
        fake.close()
