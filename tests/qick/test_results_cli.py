"""Results for people: ``userclient show-results FILE`` and ``results ID -o FILE --summary``
(CLI subprocesses), and ``WorkloadManager.read_results`` refusing partial results unless
asked."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from executor.runner import open_board, run_workload
from qickwork import IncompleteResults
from tests.qick.programs import QickSweep1D, SweepV2
from userclient.workload import WorkloadManager

CLI = [sys.executable, "-m", "userclient.cli"]


def cli(*args: str, config=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    extra = ["--config", str(config)] if config else []
    return subprocess.run(CLI + extra + list(args), capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A sweep (raw data), five single points, a decimated program; run DONE, and run again
    with the decimated readout failing (FAILED after 6 of 7 programs)."""
    import logging
    logging.getLogger("qick").setLevel(logging.ERROR)
    tmp = tmp_path_factory.mktemp("results")
    board = open_board("simulated", "zcu216-v2", seed=3)
    wm = WorkloadManager(board.soccfg)
    wm.add(SweepV2(board.soccfg, reps=10, final_delay=1.0,
                   cfg={"freq": QickSweep1D("f", 140, 160), "steps": 21}), rounds=2,
           save_raw=True)
    for k in range(5):
        wm.add(SweepV2(board.soccfg, reps=3, final_delay=1.0, cfg={"freq": 150.0 + k}))
    wm.add(SweepV2(board.soccfg, reps=3, final_delay=1.0, cfg={"freq": 150.0}),
           acqtype="decimated")
    wm.write(tmp / "w.json.gz")
    done = run_workload(str(tmp / "w.json.gz"), str(tmp / "done.h5"), board, work_id="w-done")
    assert done.status == "DONE"

    def dma_fails(*args, **kwargs):  # fault at the FPGA edge
        raise RuntimeError("DMA transfer timed out")
    board.soc.get_decimated = dma_fails
    failed = run_workload(str(tmp / "w.json.gz"), str(tmp / "failed.h5"), board)
    assert (failed.status, failed.programs_done) == ("FAILED", 6)
    return wm, tmp, board


def test_show_results_prints_the_run_and_a_line_per_program_layout(made):
    wm, tmp, board = made
    out = cli("show-results", str(tmp / "done.h5"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{tmp / 'done.h5'}: DONE"
    text = out.stdout
    assert f"firmware  {wm.entries[0].firmware_name}" in text
    assert "w-done on simulated zcu216-v2" in text
    import qick
    assert f"qick      {qick.__version__}" in text
    assert "programs  7 of 7 completed" in text
    assert "s on the board (started " in text
    rows = {line.split()[0]: line for line in lines if line[:1].isdigit()}
    assert set(rows) == {"0", "1-5", "6"}       # the five single points share a line
    assert "avg (1, 1, 21, 2) float64; raw (1, 210, 2) int64" in rows["0"]
    assert "accumulated" in rows["1-5"] and "avg (1, 1, 2) float64" in rows["1-5"]
    assert "decimated" in rows["6"] and "dec (1, 3, " in rows["6"]


def test_show_results_json_matches_the_file(made):
    _, tmp, _ = made
    out = cli("--json", "show-results", str(tmp / "done.h5"))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["Status"] == "DONE" and summary["ErrorMessage"] is None
    assert summary["ProgramsDone"] == summary["ProgramsTotal"] == 7
    assert [p["Index"] for p in summary["Programs"]] == list(range(7))
    with h5py.File(tmp / "done.h5") as f:
        for program in summary["Programs"]:
            group = f["data"][str(program["Index"])]
            assert {d["Name"]: (tuple(d["Shape"]), d["DType"]) for d in program["Datasets"]} \
                == {k: (group[k].shape, str(group[k].dtype)) for k in group}
    assert summary["Programs"][6]["AcqType"] == "decimated"


def test_show_results_of_a_failed_run_says_so_and_exits_1(made):
    _, tmp, _ = made
    out = cli("show-results", str(tmp / "failed.h5"))
    assert out.returncode == 1, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith(f"{tmp / 'failed.h5'}: FAILED (device_error: program 6 failed")
    assert "DMA transfer timed out" in first
    assert "programs  6 of 7 completed" in out.stdout
    assert json.loads(cli("--json", "show-results", str(tmp / "failed.h5")).stdout)[
        "ErrorKind"] == "device_error"


def test_show_results_of_an_original_client_file_has_no_status(tmp_path):
    with h5py.File(tmp_path / "orig.h5", "w") as f:   # the original SideQICK layout
        f.create_group("data", track_order=True).create_group("0").create_dataset(
            "avg", data=np.zeros((1, 5, 2)))
    out = cli("show-results", str(tmp_path / "orig.h5"))
    assert out.returncode == 0, out.stderr
    assert "no status recorded" in out.stdout
    assert "avg (1, 5, 2) float64" in out.stdout


@pytest.mark.parametrize("name, content, message", [
    ("missing.h5", None, "no such file"),
    ("w.json.gz", b"\x1f\x8b not hdf5", "is not a results file (HDF5)"),
])
def test_show_results_of_a_wrong_file_is_a_usage_error(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    out = cli("show-results", str(tmp_path / name))
    assert out.returncode == 2
    assert message in out.stderr and "userclient results ID -o FILE" in out.stderr
    assert "Traceback" not in out.stderr


def test_read_results_refuses_a_failed_file_unless_partial_is_asked(made):
    wm, tmp, _ = made
    with pytest.raises(IncompleteResults) as info:
        list(wm.read_results(tmp / "failed.h5"))
    err = info.value
    assert (err.status, err.programs_done, err.programs_total) == ("FAILED", 6, 7)
    assert "records FAILED after 6 of 7 programs (device_error: program 6 failed" in str(err)
    assert "partial=True" in str(err)
    with pytest.raises(IncompleteResults):   # eager: raised at the call, not at iteration
        wm.read_results(tmp / "failed.h5")
    pairs = list(wm.read_results(tmp / "failed.h5", partial=True))
    assert [p for p, _ in pairs] == wm.progs[:6]
    assert [r.index for _, r in pairs] == list(range(6))
    with open(tmp / "failed.h5", "rb") as f:      # a file object, as get_results gives
        with pytest.raises(IncompleteResults, match="records FAILED after 6 of 7"):
            wm.read_results(f)
        assert len(list(wm.read_results(f, partial=True))) == 6
    assert len(list(wm.read_results(tmp / "done.h5"))) == 7


def test_results_summary_downloads_and_prints_it(made, queue_service, tmp_path):
    from tests.server.api import World, put_file
    _, tmp, _ = made
    world = World(queue_service)
    user, _ = world.user()
    device = world.device("board")
    device.heartbeat()
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "HIGH"}).json()
    assert put_file(created["UploadUrl"], (tmp / "w.json.gz").read_bytes()).status_code == 200
    assert device.next_work().json()["WorkId"] == created["WorkId"]
    upload = device.report(created["WorkId"]).json()["UploadUrl"]
    assert put_file(upload, (tmp / "failed.h5").read_bytes()).status_code == 200
    conf = tmp_path / "user.conf"
    conf.write_text(f"[service]\napi_endpoint = {queue_service.url}\n"
                    f"[user]\napi_key = {user.token}\n")
    out = cli("results", created["WorkId"], "-o", str(tmp_path / "r.h5"), "--summary",
              config=conf)
    assert out.returncode == 1, out.stderr  # the file records FAILED
    assert out.stdout.startswith(f"results saved to {tmp_path / 'r.h5'}")
    assert "the board recorded FAILED: program 6 failed" in out.stdout
    assert "programs  6 of 7 completed" in out.stdout
    assert "raw (1, 210, 2) int64" in out.stdout
    data = json.loads(cli("--json", "results", created["WorkId"], "-o",
                          str(tmp_path / "r2.h5"), "--summary", config=conf).stdout)
    assert data["RecordedStatus"] == "FAILED"
    assert len(data["Summary"]["Programs"]) == 6
