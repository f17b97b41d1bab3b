"""The supervisor killed (SIGKILL) and restarted with work in every spool folder: each
workload ends exactly once at the service and nothing is uploaded twice."""
import os
import signal
import sqlite3
import threading
import time

import psutil

from boardcore.queuelink import device_client
from boardcore.spool import RESULTS, WORKLOAD, Spool, WorkMeta
from tests.board.conftest import make_workload
from tests.helpers import wait_for

SLOW = {"time_scale": "2000"}


def _last_seen(data_dir, device_id):
    db = sqlite3.connect(f"file:{data_dir / 'queue.db'}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT last_seen FROM devices WHERE device_id = ?",
                         (device_id,)).fetchone()
        return row[0] or 0
    finally:
        db.close()


def claim_as_the_board(board, queue_service, files):
    """Hand ``files`` (in order) to the board's device, one workload each, as a board would
    receive them. The service hands already-handed work back first, so one poll after the
    other would get the first one again: every poll is made (and seen arriving by the
    service) before the first submission, and each submission wakes exactly one of them."""
    client, device_id = device_client(str(board.config), str(board.credentials))
    got, errors = [], []

    def poll():
        try:
            got.append(client.get_work(device_id, wait_seconds=20))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = []
    for _ in files:
        asked = max(int(time.time() * 1000), _last_seen(queue_service.data_dir, device_id) + 1)
        threads.append(threading.Thread(target=poll, daemon=True))
        threads[-1].start()
        wait_for(lambda: _last_seen(queue_service.data_dir, device_id) >= asked, 10,
                 what="the long poll to reach the service")
    ids = []
    for i, path in enumerate(files):
        ids.append(board.submit(path))
        wait_for(lambda: len(got) == i + 1 or errors, 10, what="a poll to be handed the work")
    for t in threads:
        t.join(5)
    assert not errors, errors
    assert sorted(w["WorkId"] for w in got) == sorted(ids)
    return ids, {w["WorkId"]: w["WorkloadUrl"] for w in got}


def download_into(spool, work_id, url, state, partial=False):
    """What the downloader does: ``incoming/``, the file, meta, then ``ready/``."""
    from cloudqueue.transfer import download_file
    folder = spool.create_incoming(work_id)
    download_file(url, folder / WORKLOAD)
    if partial:  # the download was cut half-way (no meta yet)
        data = (folder / WORKLOAD).read_bytes()
        (folder / WORKLOAD).write_bytes(data[:len(data) // 2])
        return folder
    meta = WorkMeta(work_id, received_at=time.time(), size=(folder / WORKLOAD).stat().st_size)
    spool.write_meta("incoming", meta)
    if state != "incoming":
        spool.move(work_id, "incoming", state)
    return spool.path(state, work_id)


def test_supervisor_sigkill_with_work_in_every_spool_folder_ends_each_exactly_once(
        board_factory, queue_service, tmp_path):
    board = board_factory(executor=SLOW)
    spool = Spool(board.spool).ensure()
    slow = make_workload(tmp_path / "slow.gz", programs=1, reps=20000)
    fast = make_workload(tmp_path / "fast.gz", programs=1, reps=1)
    (a, b, c, d), urls = claim_as_the_board(board, queue_service, [slow, fast, fast, fast])

    # A: in ready/ when the daemon starts; it runs it, and is SIGKILLed in the middle
    download_into(spool, a, urls[a], "ready")
    board.start()
    wait_for(lambda: (board.status()["current"] or {}).get("work_id") == a, 20,
             what="A to run")
    pids = [board.child_pid(n) for n in ("downloader", "executor", "uploader")]
    os.kill(board.proc.pid, signal.SIGKILL)
    board.proc.wait()
    # the children go by themselves: the executor with its parent (PR_SET_PDEATHSIG), the
    # others when the supervisor's heartbeats stop (3 s here)
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() !=
                             psutil.STATUS_ZOMBIE for p in pids), 15,
             what="the children to stop after their supervisor died")
    assert spool.ids("running") == [a]

    # while the board is down: B half downloaded, C ready, D finished and not yet uploaded
    download_into(spool, b, urls[b], "incoming", partial=True)
    download_into(spool, c, urls[c], "ready")
    folder = download_into(spool, d, urls[d], "running")
    from executor.runner import open_board, run_workload
    ran = run_workload(str(folder / WORKLOAD), str(folder / RESULTS),
                       open_board("simulated", "zcu216-v2", seed=1))
    assert ran.status == "DONE"
    meta = spool.read_meta("running", d)
    meta.finish("DONE", seconds=ran.seconds, programs_done=1, programs_total=1,
                has_results=True)
    spool.move(d, "running", "outgoing", meta)
    d_results = (spool.path("outgoing", d) / RESULTS).read_bytes()
    assert {s: spool.ids(s) for s in ("incoming", "ready", "running", "outgoing")} == \
        {"incoming": [b], "ready": [c], "running": [a], "outgoing": [d]}

    board.start()
    final = {w: board.wait_terminal(w, 40) for w in (a, b, c, d)}
    assert final[a].WorkStatus == "FAILED" and final[a].ErrorKind == "board_restarted"
    assert "restarted while this workload was running" in final[a].ErrorMessage
    assert [final[w].WorkStatus for w in (b, c, d)] == ["DONE"] * 3, final
    # B was handed out again (its partial download was dropped); the others only once
    assert {w: final[w].Attempts for w in (a, b, c, d)} == {a: 1, b: 2, c: 1, d: 1}
    status = wait_for(lambda: (lambda s: s if s["spool"]["done"] == 4 and s["counts"] == {
        "DONE": 3, "FAILED": 1, "CANCELLED": 0} else None)(board.status()), 15,
        what="all four in done/ and counted")
    assert sum(status["spool"].values()) == 4
    # nothing was uploaded twice: one report per workload in the daemon's log (both runs),
    # no upload was refused as a repeat, and the service holds D's results as the board
    # made them
    log = board.log()
    for w in (a, b, c, d):
        assert log.count(f"workload {w} reported") == 1, log
        assert spool.read_meta("done", w).upload_error is None
    from cloudqueue.transfer import download_file
    download_file(final[d].WorkloadResultUrl, tmp_path / "d.h5")
    assert (tmp_path / "d.h5").read_bytes() == d_results
    assert board.stop() == 0


def test_recovery_finishes_a_half_written_results_file_with_how_far_it_got(tmp_path):
    """``explain_interrupted``: partial results are kept and say FAILED/board_restarted with
    the programs done; a file with no program done, or one that cannot be opened (cut in
    the middle of a write), is dropped and the failure is reported alone."""
    import h5py
    import numpy as np
    from qickwork.results import ResultsWriter
    from supervisor.daemon import explain_interrupted

    spool = Spool(tmp_path / "spool").ensure()
    for work_id, programs in (("partial", 2), ("nothing", 0), ("torn", None)):
        folder = spool.path("running", work_id)
        folder.mkdir()
        spool.write_meta("running", WorkMeta(work_id, attempts=1))
        if programs is None:
            (folder / RESULTS).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
            continue
        writer = ResultsWriter(folder / RESULTS, programs_total=3, work_id=work_id)
        for i in range(programs):
            writer.add(i, acqtype="accumulated", seconds=0.1, avg=[np.zeros((1, 2))])
        writer.close()  # never finished: it still says RUNNING
    # runs that ended, whose outcome the daemon died before filing: reported as they ended
    for work_id, status in (("ended", "DONE"), ("refused", "FAILED")):
        folder = spool.path("running", work_id)
        folder.mkdir()
        spool.write_meta("running", WorkMeta(work_id, attempts=1))
        with ResultsWriter(folder / RESULTS, programs_total=2, work_id=work_id) as writer:
            for i in range(2 if status == "DONE" else 0):
                writer.add(i, acqtype="accumulated", seconds=0.1, avg=[np.zeros((1, 2))])
            writer.finish(status, seconds=0.3, error_kind="invalid_workload" if
                          status == "FAILED" else "", error_message="not gzip" if
                          status == "FAILED" else "")
    report = spool.recover()
    assert sorted(report["failed"]) == ["ended", "nothing", "partial", "refused", "torn"]
    for work_id in report["failed"]:
        explain_interrupted(spool, work_id)

    meta = spool.read_meta("outgoing", "partial")
    assert (meta.outcome, meta.error_kind, meta.has_results) == ("FAILED", "board_restarted",
                                                                 True)
    assert meta.error_message.startswith("the board daemon restarted while this workload "
                                          "was running (programs done 2 of 3)")
    with h5py.File(spool.path("outgoing", "partial") / RESULTS) as f:
        assert f.attrs["status"] == "FAILED" and f.attrs["error_kind"] == "board_restarted"
        assert f.attrs["error_message"] == meta.error_message
        assert list(f["data"].keys()) == ["0", "1"]
    for work_id in ("nothing", "torn"):
        meta = spool.read_meta("outgoing", work_id)
        assert meta.outcome == "FAILED" and not meta.has_results
        assert "restarted while this workload was running" in meta.error_message
        assert not (spool.path("outgoing", work_id) / RESULTS).exists()
    meta = spool.read_meta("outgoing", "ended")
    assert (meta.outcome, meta.error_kind, meta.has_results) == ("DONE", None, True)
    assert (meta.programs_done, meta.programs_total) == (2, 2)
    meta = spool.read_meta("outgoing", "refused")
    assert (meta.outcome, meta.error_kind, meta.error_message, meta.has_results) == \
        ("FAILED", "invalid_workload", "not gzip", False)


def test_the_stock_upload_makes_partial_results_record_the_outcome(tmp_path):
    """On a stock service the results file is the only record: partial results of an
    executor that died (still RUNNING) are finished with the outcome before the upload; a
    torn file is replaced by one that holds only the outcome."""
    import numpy as np
    from qickwork.results import ResultsWriter, recorded_outcome
    from uploader.main import record_outcome

    meta = WorkMeta("w", outcome="FAILED", error_kind="deadline",
                    error_message="passed its deadline of 60 s", programs_total=3)
    partial = tmp_path / "partial.h5"
    with ResultsWriter(partial, programs_total=3) as writer:
        writer.add(0, acqtype="accumulated", seconds=0.1, avg=[np.zeros((1, 2))])
    record_outcome(partial, meta)
    assert recorded_outcome(partial) == {
        "Status": "FAILED", "ErrorKind": "deadline", "ErrorMessage": "passed its deadline of 60 s",
        "ProgramsDone": 1, "ProgramsTotal": 3}
    torn = tmp_path / "torn.h5"
    torn.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    record_outcome(torn, meta)
    assert recorded_outcome(torn)["Status"] == "FAILED"
    assert recorded_outcome(torn)["ProgramsDone"] == 0
