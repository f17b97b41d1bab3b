"""The lost-answer test: the workload upload's 200 is dropped on the way back (a loopback TCP
proxy between the client and the service), the client retries the PUT, and the work still
runs exactly once on the board (a retried upload must never hand the work out again)."""
from __future__ import annotations

import socket
import threading
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from tests.helpers import wait_for


class DropFirstAnswerProxy:
    """Forwards loopback TCP connections to ``target``; the first answer it sees (the first
    bytes from the service on any connection) is not forwarded: once ``before_drop`` has
    returned, both sides of that connection are closed. Every later connection passes."""

    def __init__(self, target: tuple[str, int], before_drop: Callable[[], None]):
        self.target = target
        self.before_drop = before_drop
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if answers:
                    with self._lock:
                        drop = self.dropped == 0
                        self.dropped += drop
                    if drop:
                        self.before_drop()
                        break  # the answer is lost: close both sides unforwarded
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                s.close()


def test_a_lost_upload_answer_retried_runs_the_work_once(board_factory, tmp_path):
    from cloudqueue.transfer import upload_file
    from tests.board.conftest import make_workload
    board = board_factory(executor={"time_scale": "2000"}).start()  # runs for a few s
    workload = make_workload(tmp_path / "slow.gz", reps=1000)
    admin = board.admin
    answer = admin.create_workload(board.device_id)
    work_id = answer["WorkId"]

    def handed_out() -> None:
        # hold the lost answer until the board runs the work: the retry then arrives for
        # work already handed out, the case that ran it twice
        wait_for(lambda: admin.get_workload(work_id).WorkStatus == "EXECUTING", 30,
                 what="the board to run the work")

    url = urlsplit(answer["UploadUrl"])
    proxy = DropFirstAnswerProxy((url.hostname, url.port), handed_out)
    try:
        sent = upload_file(urlunsplit(url._replace(netloc=f"127.0.0.1:{proxy.port}")),
                           workload, what="workload upload")
    finally:
        proxy.close()
    assert proxy.dropped == 1 and proxy.connections == 2  # one answer lost, one retry
    assert sent.size == workload.stat().st_size
    running = admin.get_workload(work_id)  # the retry's 200 changed nothing
    assert running.WorkStatus in ("EXECUTING", "UPLOADING", "DONE") and running.Attempts == 1

    done = board.wait_terminal(work_id)
    assert done.WorkStatus == "DONE", (done, board.log())
    assert done.Attempts == 1, done  # the board was handed it once
    assert done.WorkloadResultUrl  # and its results were accepted
    log = wait_for(lambda: (lambda text: text if f"workload {work_id} reported DONE: the "
                            "service accepted it" in text else None)(board.log()), 10,
                   what="the uploader's log line")
    assert "refused" not in log
    # the uploader tells the supervisor after that line: its count follows on the bus
    wait_for(lambda: board.status()["counts"].get("DONE") == 1, 10, what="DONE counted once")
    assert board.stop() == 0


def test_the_uploader_logs_a_refused_outcome_as_refused(board_factory):
    """The uploader's log says what the service answered: a results upload the service
    refuses (409: work cancelled before it ran) is logged as refused, not as reported."""
    import time
    from boardcore.spool import RESULTS, WORKLOAD, Spool, WorkMeta
    board = board_factory()
    admin = board.admin
    answer = admin.create_workload(board.device_id)
    work_id = answer["WorkId"]
    admin.cancel_workload(work_id)
    # the board holds it finished in outgoing/ (say, from before a restart)
    spool = Spool(board.spool).ensure()
    folder = spool.create_incoming(work_id)
    (folder / WORKLOAD).write_bytes(b"workload")
    spool.write_meta("incoming", WorkMeta(work_id, received_at=time.time(), size=8))
    (folder / RESULTS).write_bytes(b"results")
    spool.move(work_id, "incoming", "outgoing",
               WorkMeta(work_id, received_at=time.time(), size=8).finish(
                   "DONE", seconds=0.1, has_results=True))
    board.start()
    log = wait_for(lambda: (lambda text: text if f"workload {work_id}: the service refused "
                            "its DONE (409 conflict:" in text else None)(board.log()), 20,
                   what="the uploader's refusal in the log")
    assert f"workload {work_id} reported" not in log
    meta = wait_for(lambda: spool.read_meta("done", work_id), 10, what="the work in done/")
    assert meta.upload_error.startswith("Conflict: ")
    assert admin.get_workload(work_id).WorkStatus == "CANCELLED"
    assert board.stop() == 0
