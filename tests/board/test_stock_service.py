"""The board daemon against a service that speaks only the stock protocol (no
``/capabilities``, no long poll, no ``Holding``, no FAILED state): it polls, runs work once
each, and a workload that fails on the board is finished with a results file that records
the error, instead of being handed back and run again forever."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.board.conftest import BoardDaemon


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
    finally:
        board.cleanup()
