"""A network child's worker thread must never die quietly: one bad spool entry does not stop
the uploader, and a worker that dies anyway takes its process down (to be restarted)
instead of leaving it answering heartbeats with nothing working."""
import tempfile
import threading

from boardcore import exitcodes
from boardcore.bus import ChildBus, SupervisorBus
from boardcore.queuelink import Link
from boardcore.spool import META, Spool
from tests.board.conftest import make_workload
from tests.board.test_recovery import claim_as_the_board, download_into
from tests.helpers import wait_for


def test_an_entry_that_cannot_be_moved_does_not_stop_the_uploads(board_factory, queue_service,
                                                                   tmp_path):
    board = board_factory()
    spool = Spool(board.spool).ensure()
    (good,), urls = claim_as_the_board(board, queue_service, [make_workload(tmp_path / "g.gz")])
    download_into(spool, good, urls[good], "outgoing")
    meta = spool.read_meta("outgoing", good)
    spool.write_meta("outgoing", meta.finish("FAILED", "device_error", "the test failed it"))
    # an entry whose meta.json cannot be replaced (a directory): first in line
    broken = spool.path("outgoing", "broken-entry")
    (broken / META).mkdir(parents=True)
    board.start()
    work = board.wait_terminal(good, 20)
    assert work.WorkStatus == "FAILED" and work.ErrorMessage == "the test failed it"
    assert "broken-entry" in board.log() and "retry in" in board.log()
    assert board.status()["children"]["uploader"]["restarts"] == 0


def test_a_dead_worker_thread_stops_its_process(tmp_path):
    with tempfile.TemporaryDirectory(prefix="qb", dir="/tmp") as run_dir:
        sup = SupervisorBus(run_dir)
        try:
            # a heartbeat timeout far past the join below: stopping within it is the
            # worker's death, not the timeout
            link = Link("uploader", Spool(tmp_path / "spool"))
            bus = ChildBus(sup.address, "uploader", 0.05, 300.0)

            def worker():
                raise OSError(28, "No space left on device")

            hook, threading.excepthook = threading.excepthook, lambda info: None
            codes = []
            try:
                serving = threading.Thread(target=lambda: codes.append(link.serve(
                    bus, lambda msg: None, [threading.Thread(target=worker)])), daemon=True)
                serving.start()
                serving.join(30)
            finally:
                threading.excepthook = hook
            assert codes == [exitcodes.FAILURE], "the process did not stop with its worker"
            assert link.stop.is_set()
            wait_for(lambda: any(m["type"] == "hello" for _, m in sup.recv(0.05)), 5,
                     what="its hello")
        finally:
            sup.close()
