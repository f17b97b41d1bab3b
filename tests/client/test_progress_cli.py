"""``userclient wait`` shows the progress the board reports, line by line when stderr is
not a terminal and as a bar on a terminal (a pty), against the real service."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from tests.client.test_cli_service import CLI, lab, run  # noqa: F401  (fixture)
from tests.helpers import wait_for
from tests.server.test_progress import health
from cloudqueue.transfer import upload_file


def _start(lab, stderr):
    (lab["tmp"] / "w").write_bytes(b"x" * 100)
    work_id = run(lab["ada"], "submit", str(lab["tmp"] / "w"), "--device",
                  lab["device_id"], "--force").stdout.strip()
    assert lab["board"].get_work(lab["device_id"])["WorkId"] == work_id
    proc = subprocess.Popen(CLI + ["--config", str(lab["ada"]), "wait", work_id,
                                   "--interval", "0.2", "--timeout", "30"],
                            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("QICK_")})
    return work_id, proc


def _finish(lab, work_id):
    board, device_id = lab["board"], lab["device_id"]
    url = board.results_upload_url(device_id, work_id)
    (lab["tmp"] / "r").write_bytes(b"results")
    upload_file(url, lab["tmp"] / "r")


class Reader:
    """Collect what a file descriptor says, without blocking past a deadline."""

    def __init__(self, fd: int):
        self.fd, self.text = fd, ""

    def has(self, needle: str) -> bool:
        ready, _, _ = select.select([self.fd], [], [], 0.05)
        if ready:
            try:
                self.text += os.read(self.fd, 65536).decode(errors="replace")
            except OSError:
                pass
        return needle in self.text


def test_wait_prints_a_line_per_progress_step_when_not_a_tty(lab):
    board, device_id = lab["board"], lab["device_id"]
    read_fd, write_fd = os.pipe()
    work_id, proc = _start(lab, write_fd)
    os.close(write_fd)
    out = Reader(read_fd)
    try:
        for done in (1, 2):
            board.heartbeat(device_id, "BUSY", health=health(work_id, done, 3))
            wait_for(lambda: out.has(f"EXECUTING  {done}/3 programs"), 15,
                     what=f"the {done}/3 line")
        _finish(lab, work_id)
        assert proc.wait(30) == 0
        wait_for(lambda: out.has("DONE  3/3 programs"), 5, what="the DONE line")
    finally:
        proc.kill()
        os.close(read_fd)
    steps = [line.split(" ", 1)[1].split("  (waited")[0]
             for line in out.text.splitlines() if "programs" in line]
    # one line per change, no repeats; a waiter on the long poll (workload-wait) also sees
    # the short UPLOADING step between the report and the upload
    assert steps in (["EXECUTING  1/3 programs", "EXECUTING  2/3 programs",
                      "DONE  3/3 programs"],
                     ["EXECUTING  1/3 programs", "EXECUTING  2/3 programs",
                      "UPLOADING  2/3 programs", "DONE  3/3 programs"]), out.text
    assert "[" not in out.text


def test_wait_draws_a_progress_bar_on_a_terminal(lab):
    board, device_id = lab["board"], lab["device_id"]
    master, slave = pty.openpty()
    work_id, proc = _start(lab, slave)
    os.close(slave)
    out = Reader(master)
    try:
        board.heartbeat(device_id, "BUSY", health=health(work_id, 120, 201))
        wait_for(lambda: out.has("EXECUTING  [###########---------] 120/201 programs"), 15,
                 what="the progress bar")
        assert "\r" in out.text
        _finish(lab, work_id)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        os.close(master)
