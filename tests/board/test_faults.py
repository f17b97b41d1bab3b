"""Fault injection against real processes: kill -9 of each child mid-work, a hung executor
past its deadline, malformed workloads, the queue service down for a while."""
import gzip
import os
import re
import signal

import pytest

from tests.board.conftest import make_workload
from tests.helpers import wait_for

SLOW = {"time_scale": "2000"}  # the simulated board runs ~2000x slower than real time


def _running(board):
    return wait_for(lambda: board.status()["current"], 20, what="work to start")


def test_hung_executor_hits_the_deadline_and_the_next_workload_runs(board_factory, tmp_path):
    """The backstop: one program running far past the deadline cannot stop between
    programs, and stopping after it (SIGTERM) is too late: SIGKILL after the grace."""
    board = board_factory(executor=dict(SLOW, deadline_seconds="2",
                                        deadline_margin_seconds="0.5")).start()
    slow = board.submit(make_workload(tmp_path / "slow.gz", programs=1, reps=20000))
    failed = board.wait_terminal(slow, 30)
    assert failed.WorkStatus == "FAILED" and failed.ErrorKind == "deadline"
    assert "time limit of 2 s" in failed.ErrorMessage
    fast = board.submit(make_workload(tmp_path / "fast.gz", programs=1, reps=1))
    assert board.wait_terminal(fast, 30).WorkStatus == "DONE"
    assert board.status()["children"]["executor"]["restarts"] == 1
    assert board.status()["state"] == "ONLINE"


def test_sigterm_to_the_executor_mid_workload_keeps_the_programs_done(board_factory,
                                                                     tmp_path):
    """SIGTERM = stop after this program: no kill is needed, the results file is complete
    and readable with the programs done, and records the outcome."""
    import h5py
    from cloudqueue.transfer import download_file
    board = board_factory(executor=SLOW).start()
    total = 6
    work_id = board.submit(make_workload(tmp_path / "w.gz", programs=total, reps=300))
    wait_for(lambda: (board.status()["current"] or {}).get("programs_done", 0) >= 1, 60,
             what="a program done")
    pid = board.child_pid("executor")
    os.kill(pid, signal.SIGTERM)
    work = board.wait_terminal(work_id, 40)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "stopped", work
    done, of = work.programs
    assert 1 <= done < total and of == total
    assert f"(SIGTERM) after {done} of {total} programs" in work.ErrorMessage
    wait_for(lambda: re.search(rf"executor \(pid {pid}\) exited with 0", board.log()), 10,
             what="the executor to exit by itself")
    assert f"pid {pid}) did not stop in time: SIGKILL" not in board.log()
    download_file(work.WorkloadResultUrl, tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5") as f:
        assert (f.attrs["status"], f.attrs["error_kind"]) == ("FAILED", "stopped")
        assert f.attrs["programs_done"] == done
        assert sorted(f["data"].keys()) == [str(i) for i in range(done)]
    # the executor is started again and takes the next workload
    nxt = board.wait_terminal(board.submit(make_workload(tmp_path / "n.gz")), 40)
    assert nxt.WorkStatus == "DONE"


@pytest.mark.parametrize("content,words", [
    (b"this is not gzip", "gzip"),
    (gzip.compress(b'{"not": valid json', mtime=0), "JSON"),
])
def test_malformed_workloads_fail_clearly_and_the_board_stays_online(board_factory, tmp_path,
                                                                     content, words):
    board = board_factory().start()
    bad = tmp_path / "bad.gz"
    bad.write_bytes(content)
    work = board.wait_terminal(board.submit(bad))
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "invalid_workload"
    assert words in work.ErrorMessage
    assert board.status()["state"] == "ONLINE"
    assert board.status()["children"]["executor"]["restarts"] == 0


def test_a_too_large_workload_is_refused_before_running(board_factory, tmp_path):
    board = board_factory(executor={"max_workload_mb": "1"}).start()
    big = tmp_path / "big.gz"
    big.write_bytes(os.urandom(2 * 2**20))
    work = board.wait_terminal(board.submit(big))
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "too_large"
    assert "2.0 MB, over this board's limit of 1 MB" in work.ErrorMessage
    assert "[executor] max_workload_mb" in work.ErrorMessage  # how to change the limit
    assert "refused: download of workload" in board.log()  # stopped while downloading
    ok = board.wait_terminal(board.submit(make_workload(tmp_path / "ok.gz")))
    assert ok.WorkStatus == "DONE"


@pytest.mark.parametrize("child", ["downloader", "uploader", "executor"])
def test_kill_9_of_a_child_mid_work_loses_and_doubles_nothing(board_factory, tmp_path, child):
    board = board_factory(executor=SLOW).start()
    work_id = board.submit(make_workload(tmp_path / "w.gz", programs=2, reps=600))
    _running(board)
    pid = board.child_pid(child)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: board.status()["children"][child]["restarts"] == 1, 15,
             what=f"{child} restarted")
    assert board.child_pid(child) != pid
    work = board.wait_terminal(work_id, 40)
    if child == "executor":
        assert work.WorkStatus == "FAILED" and work.ErrorKind == "crashed"
        assert "SIGKILL" in work.ErrorMessage
    else:
        assert work.WorkStatus == "DONE", work
    nxt = board.wait_terminal(board.submit(make_workload(tmp_path / "n.gz")), 40)
    assert nxt.WorkStatus == "DONE"
    # the service has the results before the uploader moves the work to done/
    counts = {"DONE": 2 - (child == "executor"), "FAILED": int(child == "executor"),
              "CANCELLED": 0}
    # the supervisor counts a workload when the uploader says it moved it to done/
    status = wait_for(lambda: (lambda s: s if s["spool"]["done"] == 2 and
                               s["counts"] == counts else None)(board.status()), 10,
                      what="both in done/ and counted")
    assert sum(status["spool"].values()) == 2  # each exactly once


def test_queue_down_for_a_while_results_are_kept_and_uploaded(board_factory, tmp_path,
                                                              queue_service):
    board = board_factory(executor=SLOW).start()
    work_id = board.submit(make_workload(tmp_path / "w.gz", programs=1, reps=1000))
    _running(board)
    queue_service.kill()
    wait_for(lambda: board.status()["spool"]["outgoing"] == 1, 30,
             what="finished work waiting in outgoing/")
    wait_for(lambda: not board.status()["queue"]["ok"], 10, what="the board to notice")
    queue_service.start()
    assert board.wait_terminal(work_id, 40).WorkStatus == "DONE"
    wait_for(lambda: board.status()["queue"]["ok"], 10, what="queue reachable again")
