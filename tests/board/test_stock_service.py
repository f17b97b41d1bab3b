"""The board daemon against a service that speaks only the stock protocol (no
``/capabilities``, no long poll, no ``Holding``, no FAILED state): it polls, runs work once
each, and a workload that fails on the board is finished with a results file that records
the error, instead of being handed back and run again forever."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import requests

from tests.board.conftest import BoardDaemon, make_workload
from tests.helpers import wait_for


def test_board_polls_a_stock_service_and_ends_failures_with_their_results(
        tmp_path, queue_service_factory, workload):
    import h5py
    from cloudqueue.transfer import download_file

    stock = queue_service_factory(stock_protocol=True)
    assert requests.get(stock.url + "/capabilities", timeout=10).status_code == 403
    board = BoardDaemon(tmp_path / "board", stock, supervisor={"poll_seconds": "0.3"})
    try:
        board.start()
        bad = tmp_path / "bad.gz"
        bad.write_bytes(b"this is not gzip")
        good, broken, after = board.submit(workload), board.submit(bad), board.submit(workload)

        for work_id in (good, broken, after):
            done = board.wait_terminal(work_id)
            # stock has no FAILED: everything ends DONE, each handed out exactly once
            assert done.WorkStatus == "DONE" and done.Attempts == 1, (done, board.log())

        target = tmp_path / "broken.h5"
        download_file(board.wait_terminal(broken).WorkloadResultUrl, target)
        with h5py.File(target) as f:
            assert f.attrs["status"] == "FAILED"
            assert f.attrs["error_kind"] == "invalid_workload"
            assert "gzip" in f.attrs["error_message"]

        # the CLI says what the board recorded, and exits 1 (workload failed)
        conf = tmp_path / "user.conf"
        conf.write_text(f"[service]\napi_endpoint = {stock.url}\n[user]\n"
                        f"api_key = {stock.admin_key}\n")
        cli = subprocess.run([str(Path(sys.executable).parent / "userclient"), "--config",
                              str(conf), "results", broken, "-o", str(tmp_path / "r.h5")],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 1, cli.stderr
        assert "the board recorded FAILED" in cli.stdout and "gzip" in cli.stdout
        # status and wait read the outcome from the results file too: FAILED, exit 1
        for command in ("status", "wait"):
            shown = subprocess.run([str(Path(sys.executable).parent / "userclient"),
                                    "--config", str(conf), command, broken],
                                   capture_output=True, text=True, timeout=60)
            assert shown.returncode == 1, (command, shown.stderr)
            assert "FAILED" in shown.stdout and "gzip" in shown.stdout
        good_status = subprocess.run([str(Path(sys.executable).parent / "userclient"),
                                      "--config", str(conf), "status", good],
                                     capture_output=True, text=True, timeout=60)
        assert good_status.returncode == 0 and "DONE" in good_status.stdout
    finally:
        board.cleanup()


def test_a_board_in_error_heartbeats_offline_to_a_stock_service_and_stays_heard(
        tmp_path, queue_service_factory):
    stock = queue_service_factory(stock_protocol=True)
    bad = tmp_path / "soccfg.json"
    bad.write_text(json.dumps({"board": "nothing useful"}))
    board = BoardDaemon(tmp_path / "board", stock,
                        supervisor={"poll_seconds": "0.3", "restart_max": "1",
                                    "restart_period_seconds": "60",
                                    "restart_slow_seconds": "60"},
                        executor={"soccfg_json": str(bad)})
    try:
        board.start(wait_ready=False)
        wait_for(lambda: board.status()["state"] == "ERROR", 30, what="the board in ERROR")
        # ERROR is no value of the stock gateway's model: the board says OFFLINE instead,
        # and its heartbeats keep arriving (LastRefreshed moves on)
        first = wait_for(lambda: (lambda d: d if d.DeviceStatus == "OFFLINE" and
                                  d.LastRefreshed else None)(
            board.admin.get_device(board.device_id)), 15, what="OFFLINE at the service")
        later = wait_for(lambda: (lambda d: d if d.LastRefreshed > first.LastRefreshed
                                  else None)(board.admin.get_device(board.device_id)),
                         15, what="a later heartbeat accepted")
        assert later.DeviceStatus == "OFFLINE"
        assert board.status()["state"] == "ERROR" and board.status()["queue"]["ok"]
        assert "heartbeat failed" not in board.log(), board.log()
    finally:
        board.cleanup()


def test_a_restart_mid_run_on_a_stock_service_uploads_results_that_say_why(
        tmp_path, queue_service_factory):
    import h5py
    from cloudqueue.transfer import download_file

    stock = queue_service_factory(stock_protocol=True)
    board = BoardDaemon(tmp_path / "board", stock,
                        supervisor={"poll_seconds": "0.3"}, executor={"time_scale": "2000"})
    try:
        board.start()
        work_id = board.submit(make_workload(tmp_path / "w.gz", programs=3, reps=5000))
        wait_for(lambda: ((board.status()["current"] or {}).get("programs_done") or 0) >= 1,
                 60, what="one program of three done")
        pids = [board.child_pid(n) for n in ("downloader", "executor", "uploader")]
        os.kill(board.proc.pid, signal.SIGKILL)
        board.proc.wait()
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() !=
                                 psutil.STATUS_ZOMBIE for p in pids), 15,
                 what="the children to stop after their supervisor died")
        board.start()
        done = board.wait_terminal(work_id, 60)
        assert done.WorkStatus == "DONE"  # all a stock service can say
        target = tmp_path / "r.h5"
        download_file(done.WorkloadResultUrl, target)
        with h5py.File(target) as f:
            attrs = {k: f.attrs[k] for k in ("status", "error_kind", "error_message",
                                             "programs_done", "programs_total")}
            kept = sorted(f["data"].keys())
        assert attrs["status"] == "FAILED" and attrs["error_kind"] == "board_restarted"
        n = int(attrs["programs_done"])
        assert 1 <= n < 3 and attrs["programs_total"] == 3 and len(kept) == n
        assert (f"the board daemon restarted while this workload was running (programs "
                f"done {n} of 3)") in attrs["error_message"]
        conf = tmp_path / "user.conf"
        conf.write_text(f"[service]\napi_endpoint = {stock.url}\n[user]\n"
                        f"api_key = {stock.admin_key}\n")
        cli = subprocess.run([sys.executable, "-m", "userclient.cli", "--config", str(conf),
                              "status", work_id], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 1, cli.stderr
        assert "FAILED" in cli.stdout and f"programs done {n} of 3" in cli.stdout
    finally:
        board.cleanup()
