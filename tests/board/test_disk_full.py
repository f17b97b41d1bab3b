"""A full disk stops new work and never loses results, end to end: finished work in
``outgoing/`` is still uploaded, no new work is taken while the spool's filesystem is under
``min_free_mb``, and work is taken again once room returns (no restart)."""
import os
import time

import pytest

from boardcore.spool import RESULTS, WORKLOAD, Spool
from tests.board.conftest import make_workload
from tests.board.test_recovery import _last_seen, claim_as_the_board, download_into
from tests.helpers import wait_for

MARGIN_MB = 2048   # the threshold sits this far under the free space at the start ...
BALLAST_MB = 4096  # ... and a ballast file this large takes the disk below it


def _free_mb(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // 2**20


def test_a_full_disk_stops_new_work_but_uploads_finished_results(board_factory, queue_service,
                                                                  tmp_path):
    if _free_mb(tmp_path) < BALLAST_MB + MARGIN_MB + 1024:
        pytest.skip("not enough free disk for the ballast file")
    threshold = _free_mb(tmp_path) - MARGIN_MB
    board = board_factory(supervisor={"min_free_mb": str(threshold)})
    spool = Spool(board.spool).ensure()
    # finished work waiting for upload when the disk fills up
    (done_id,), urls = claim_as_the_board(board, queue_service, [make_workload(tmp_path / "d.gz")])
    folder = download_into(spool, done_id, urls[done_id], "running")
    from executor.runner import open_board, run_workload
    ran = run_workload(str(folder / WORKLOAD), str(folder / RESULTS),
                       open_board("simulated", "zcu216-v2", seed=1))
    meta = spool.read_meta("running", done_id)
    meta.finish("DONE", seconds=ran.seconds, programs_done=1, programs_total=1,
                has_results=True)
    spool.move(done_id, "running", "outgoing", meta)

    ballast = tmp_path / "ballast"
    fd = os.open(ballast, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, BALLAST_MB * 2**20)
    except OSError as exc:
        pytest.skip(f"cannot allocate a ballast file here ({exc.strerror})")
    finally:
        os.close(fd)
    try:
        assert _free_mb(tmp_path) < threshold
        board.start()
        # the results are uploaded although the disk is full
        assert board.wait_terminal(done_id, 30).WorkStatus == "DONE"
        status = board.status()
        assert status["state"] == "ERROR" and "disk full" in status["reason"]
        assert "min_free_mb" in status["reason"] and str(threshold) in status["reason"]
        # no new work is taken: the service sees the board ask (heartbeats) and keeps it
        new_id = board.submit(make_workload(tmp_path / "n.gz"))
        seen = time.time() * 1000
        wait_for(lambda: _last_seen(queue_service.data_dir, board.device_id) > seen + 2000, 15,
                 what="the board to talk to the service for two more seconds")
        waiting = board.admin.get_workload(new_id)
        assert waiting.WorkStatus == "READY" and not spool.find(new_id), waiting
    finally:
        ballast.unlink()
    # room returns: the same daemon takes the work
    assert board.wait_terminal(new_id, 30).WorkStatus == "DONE"
    wait_for(lambda: board.status()["state"] == "ONLINE", 10, what="the board ONLINE again")
    assert board.admin.get_workload(new_id).Attempts == 1
