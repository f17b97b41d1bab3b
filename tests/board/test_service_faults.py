"""Fault tests of the whole daemon against the real queue service: cancel through the
service, a workload for another firmware, an executor that cannot open the board (restart
intensity -> ERROR with the reason on the heartbeat), SIGTERM while a workload runs."""
import json
import os
import subprocess
import sys
import time

import pytest

from qickwork.errors import IncompleteResults
from userclient.workload import WorkloadManager
from tests.board.conftest import make_workload
from tests.board.test_systemd import FakeSystemd
from tests.helpers import wait_for

SLOW = {"time_scale": "2000"}  # the simulated board runs ~2000x slower than real time


def _running(board, work_id):
    return wait_for(lambda: (board.status()["current"] or {}).get("work_id") == work_id, 20,
                    what=f"{work_id} to run")


def test_cancel_of_ready_and_running_work_through_the_service_and_the_next_one_runs(
        board_factory, tmp_path):
    board = board_factory(executor=SLOW).start()
    running = board.submit(make_workload(tmp_path / "long.gz", programs=3, reps=20000))
    waiting = board.submit(make_workload(tmp_path / "w.gz"))
    _running(board, running)
    # READY at the service: cancelled at once, the board never gets it
    assert board.admin.cancel_workload(waiting).WorkStatus == "CANCELLED"
    board.admin.cancel_workload(running)
    work = board.wait_terminal(running, 20)
    assert work.WorkStatus == "CANCELLED", work
    assert (work.programs or (0, 3))[0] < 3  # stopped mid-run, not after the last program
    wait_for(lambda: board.status()["current"] is None, 10, what="the executor to stop")
    nxt = board.submit(make_workload(tmp_path / "next.gz"))
    assert board.wait_terminal(nxt, 30).WorkStatus == "DONE"
    assert board.admin.get_workload(waiting).WorkStatus == "CANCELLED"
    wait_for(lambda: board.status()["counts"] == {"DONE": 1, "FAILED": 0, "CANCELLED": 1},
             10, what="both counted")
    assert board.status()["spool"]["done"] == 2
    assert "cancel requested" in board.log()


def test_a_workload_for_another_firmware_fails_naming_both_and_the_board_stays_online(
        board_factory, tmp_path):
    board = board_factory(executor={"board_name": "zcu216-v1"}).start()
    work = board.wait_terminal(board.submit(make_workload(tmp_path / "v2.gz")))  # for v2
    assert work.WorkStatus == "FAILED", work
    assert "zcu216-v2" in work.ErrorMessage and "zcu216-v1" in work.ErrorMessage
    assert "compile it against this board" in work.ErrorMessage
    status = board.status()
    assert status["state"] == "ONLINE"
    assert status["children"]["executor"]["restarts"] == 0
    device = board.admin.get_device(board.device_id)
    assert device.DeviceStatus == "ONLINE"


def test_an_executor_that_cannot_open_the_board_reports_error_with_the_reason(
        board_factory, tmp_path):
    bad = tmp_path / "soccfg.json"
    bad.write_text(json.dumps({"board": "nothing useful"}))
    fake = FakeSystemd()
    try:
        board = board_factory(
            supervisor={"restart_max": "2", "restart_period_seconds": "60",
                        "restart_slow_seconds": "60"},
            executor={"soccfg_json": str(bad)})
        board.start(env=dict(os.environ, NOTIFY_SOCKET=fake.path), wait_ready=False)
        status = wait_for(lambda: (lambda s: s if s["state"] == "ERROR" else None)(
            board.status()), 30, what="the board to report ERROR")
        assert "executor" in status["reason"] and "could not open the board" in \
            status["reason"] and str(bad) in board.log()
        assert "cannot open the simulated board" in status["reason"], status["reason"]
        assert status["children"]["executor"]["state"] == "FATAL"
        restarts = status["children"]["executor"]["restarts"]
        assert restarts == 3  # past the limit of 2: no more quick restarts
        # the service hears it through the heartbeat
        device = wait_for(lambda: (lambda d: d if d.DeviceStatus == "ERROR" else None)(
            board.admin.get_device(board.device_id)), 10, what="ERROR at the service")
        assert device.Health["State"] == "ERROR"
        assert "cannot open the simulated board" in device.Health["Reason"]
        # systemd was told READY (the daemon is up, only the board is not) and why
        wait_for(lambda: fake.has("READY=1"), 10, what="READY=1")
        assert any("STATUS=ERROR" in m for _, m in fake.drain())
        # no flapping: it stays FATAL, waiting for the slow retry
        end = time.monotonic() + 1.5
        while time.monotonic() < end:  # observing that nothing happens needs a window
            assert board.status()["children"]["executor"]["restarts"] == restarts
            time.sleep(0.1)
        assert board.stop() == 0
    finally:
        fake.close()


def test_sigterm_while_a_workload_runs_lets_it_finish_then_exits_cleanly(board_factory,
                                                                           tmp_path):
    fake = FakeSystemd()
    try:
        board = board_factory(executor={"time_scale": "500"})
        board.start(env=dict(os.environ, NOTIFY_SOCKET=fake.path))
        work_id = board.submit(make_workload(tmp_path / "w.gz", programs=2, reps=1000))
        _running(board, work_id)
        assert board.stop(timeout=20) == 0
        assert fake.has("STOPPING=1")
        # it finished, and the uploader reported it before the children were stopped
        assert board.admin.get_workload(work_id).WorkStatus == "DONE"
        assert "SIGTERM: draining" in board.log()
    finally:
        fake.close()


def test_sigterm_past_the_stop_timeout_stops_the_workload_and_reports_it(board_factory,
                                                                         tmp_path):
    board = board_factory(supervisor={"stop_timeout_seconds": "0.5"}, executor=SLOW).start()
    work_id = board.submit(make_workload(tmp_path / "long.gz", programs=1, reps=20000))
    _running(board, work_id)
    # the workload runs far longer than this deadline: stopping within it means it was stopped
    assert board.stop(timeout=20) == 0
    board.start()
    work = board.wait_terminal(work_id, 20)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "board_restarted"
    assert "stopped during execution" in work.ErrorMessage


def test_cancel_of_running_work_keeps_the_programs_already_done(board_factory, tmp_path):
    """Regression: a cancel threw away the programs that had completed. The board stops
    the run, uploads a results file recording CANCELLED with the programs done, and the
    user downloads and reads them (partial=True); `userclient results` exits 1 saying so."""
    board = board_factory(executor=SLOW).start()
    total = 40
    work_id = board.submit(make_workload(tmp_path / "sweep.gz", programs=total, reps=300))
    # cancel once some programs completed: wait on the progress the service shows
    wait_for(lambda: (board.admin.get_workload(work_id).programs or (0, 0))[0] >= 2, 60,
             what="two programs done")
    board.admin.cancel_workload(work_id)
    work = board.wait_terminal(work_id, 30)
    assert work.WorkStatus == "CANCELLED", work
    assert work.WorkloadResultUrl, "the partial results were not kept"
    done, of = work.programs
    assert 2 <= done < total and of == total
    assert f"{done} of {total}" in work.ErrorMessage
    conf = tmp_path / "user.conf"
    conf.write_text(f"[service]\napi_endpoint = {board.service.url}\noauth_endpoint = "
                    f"{board.service.root}\n[user]\napi_key = {board.service.admin_key}\n")
    out = subprocess.run([sys.executable, "-m", "userclient.cli", "--config", str(conf),
                          "results", work_id, "-o", str(tmp_path / "r.h5")],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 1, out.stderr
    assert "the board recorded CANCELLED" in out.stdout
    assert f"{done} of {total} programs completed" in out.stdout
    wm = WorkloadManager(None)  # reading needs no soccfg
    with pytest.raises(IncompleteResults, match="CANCELLED"):
        wm.read_results(tmp_path / "r.h5")
    kept = list(wm.read_results(tmp_path / "r.h5", partial=True))
    assert [r.index for _, r in kept] == list(range(done))
    # the service took that file once: the board's work is in done/, counted as CANCELLED
    wait_for(lambda: board.status()["counts"]["CANCELLED"] == 1, 10, what="counted")


def test_a_cancel_stopped_by_force_still_keeps_the_programs_done(board_factory, tmp_path):
    """Regression: when the program running does not end within the grace period, the
    executor is killed, and the programs done before it were thrown away. They are kept,
    in a results file that records CANCELLED (not RUNNING, as its writer left it)."""
    import h5py
    from cloudqueue.transfer import download_file
    board = board_factory(executor=dict(SLOW, grace_seconds="0.5")).start()
    # two short programs, then one that runs far longer than the grace period
    work_id = board.submit(make_workload(tmp_path / "w.gz", programs=3, reps=300,
                                         last_reps=200000))
    wait_for(lambda: (board.admin.get_workload(work_id).programs or (0, 0))[0] >= 2, 60,
             what="the two short programs done")
    board.admin.cancel_workload(work_id)
    work = board.wait_terminal(work_id, 30)
    assert work.WorkStatus == "CANCELLED" and work.WorkloadResultUrl, work
    assert tuple(work.programs) == (2, 3)
    assert "stopped by force after 2 of 3 programs" in work.ErrorMessage
    wait_for(lambda: board.status()["children"]["executor"]["restarts"] == 1, 15,
             what="the executor, stopped by force, started again")
    download_file(work.WorkloadResultUrl, tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5") as f:
        assert f.attrs["status"] == "CANCELLED" and f.attrs["error_kind"] == "cancelled"
        assert "stopped by force" in f.attrs["error_message"]
        assert sorted(f["data"].keys()) == ["0", "1"]
    kept = list(WorkloadManager(None).read_results(tmp_path / "r.h5", partial=True))
    assert [r.index for _, r in kept] == [0, 1]


def test_the_real_board_default_off_the_rfsoc_says_which_setting_runs_a_simulated_one(
        board_factory):
    """The default is the real board: on a machine without it, the ERROR says so and names
    the setting (not the runner's ``kind='simulated'``)."""
    board = board_factory(executor={"board": "qick"},
                          supervisor={"restart_max": "1", "restart_period_seconds": "60",
                                      "restart_slow_seconds": "60"})
    board.start(wait_ready=False)
    status = wait_for(lambda: (lambda s: s if s["state"] == "ERROR" else None)(
        board.status()), 30, what="the board to report ERROR")
    assert "cannot open the real board (qick)" in status["reason"], status["reason"]
    assert "set `[executor] board = simulated`" in status["reason"], status["reason"]
    # what qick/PYNQ said, word for word (executor.openfail)
    assert "ImportError: cannot import name 'QickSoc'" in status["reason"], status["reason"]
    assert status["simulated"] is False
