"""``userclient estimate FILE`` and ``userclient submit FILE --estimate``: the board time of
a workload before it is submitted, as CLI subprocesses (and against the real service for
``--device``)."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from executor.boards import zcu216_v1, zcu216_v2
from executor.runner import open_board
from qickwork import write_workload
from qickwork.estimate import PROGRAM_OVERHEAD_SECONDS, ROUND_OVERHEAD_SECONDS
from qickwork.workload import read_workload
from tests.qick.programs import LoopV1, QickSweep1D, SweepV2
from tests.server.api import World, put_file
from userclient.workload import WorkloadManager

CLI = [sys.executable, "-m", "userclient.cli"]


def cli(*args: str, config=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    env["QICK_CONFIG"] = str(config or "/nonexistent/qick.conf")
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    """A v2 workload of two programs and the manager that wrote it."""
    board = open_board("simulated", "zcu216-v2")
    wm = WorkloadManager(board.soccfg)
    wm.add(SweepV2(board.soccfg, reps=100, final_delay=2.0,
                   cfg={"freq": QickSweep1D("f", 140, 160), "steps": 21}), rounds=3)
    wm.add(SweepV2(board.soccfg, reps=7, final_delay=1.0, cfg={"freq": 150.0}),
           acqtype="decimated")
    path = tmp_path_factory.mktemp("est") / "sweep.json.gz"
    wm.write(path)
    return path, wm


def test_estimate_from_the_recorded_firmware_agrees_with_the_manager(sweep_file):
    path, wm = sweep_file
    done = cli("--json", "estimate", str(path))
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["Submitted"] is False and body["Exact"] is True
    assert body["TotalSeconds"] == pytest.approx(wm.estimate().seconds, rel=1e-12)
    assert body["TimingClockMHz"] == pytest.approx(zcu216_v2()["tprocs"][0]["f_time"])
    p0, p1 = body["Programs"]
    assert (p0["Shots"], p0["Rounds"], p1["Shots"], p1["Rounds"]) == (2100, 3, 7, 1)
    assert p0["Seconds"] == pytest.approx(p0["ShotSeconds"] * 2100 * 3)
    assert p0["Seconds"] + p1["Seconds"] == pytest.approx(body["RunSeconds"])
    # the executor's measured time around each program, and each further round, is added
    per_program, per_round = body["ProgramOverheadSeconds"], body["RoundOverheadSeconds"]
    assert (per_program, per_round) == (PROGRAM_OVERHEAD_SECONDS, ROUND_OVERHEAD_SECONDS)
    assert p0["OverheadSeconds"] == pytest.approx(per_program + 2 * per_round)
    assert p1["OverheadSeconds"] == pytest.approx(per_program)
    assert body["OverheadSeconds"] == pytest.approx(p0["OverheadSeconds"] + p1["OverheadSeconds"])
    assert body["TotalSeconds"] == pytest.approx(body["RunSeconds"] + body["OverheadSeconds"])
    # each shot is at least the 2 us final delay
    assert p0["ShotSeconds"] >= 2e-6


def test_submit_estimate_prints_the_table_and_submits_nothing(sweep_file, tmp_path):
    path, wm = sweep_file
    soccfg = tmp_path / "soccfg.json"
    soccfg.write_text(json.dumps(zcu216_v2()))
    # no config at all: proof that nothing talks to a queue
    done = cli("submit", str(path), "--estimate", "--soccfg", str(soccfg))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "PROGRAM" in out and "accumulated" in out and "decimated" in out
    assert "estimated board time:" in out and "nothing was submitted" in out
    assert "warning" not in out


def test_the_overhead_is_said_in_the_text_and_is_a_parameter(sweep_file):
    from userclient.estimate import estimate_entries
    path, wm = sweep_file
    text = cli("estimate", str(path)).stdout
    assert "executor overhead" in text and "2.5 ms per program" in text
    assert "measured on the simulated board" in text
    pure = estimate_entries(wm.entries, program_overhead=0.0, round_overhead=0.0)
    assert pure.overhead_seconds == 0.0 and pure.seconds == pytest.approx(pure.run_seconds)
    slow = estimate_entries(wm.entries, program_overhead=0.1, round_overhead=0.01)
    assert slow.seconds == pytest.approx(pure.seconds + 2 * 0.1 + 2 * 0.01)
    assert wm.estimate().overhead_seconds == pytest.approx(
        2 * PROGRAM_OVERHEAD_SECONDS + 2 * ROUND_OVERHEAD_SECONDS)


def test_a_soccfg_of_another_firmware_is_named_in_a_warning(sweep_file, tmp_path):
    path, _ = sweep_file
    other = zcu216_v2()
    other["tprocs"][0]["f_time"] = other["tprocs"][0]["f_time"] / 2
    (tmp_path / "other.json").write_text(json.dumps(other))
    done = cli("--json", "estimate", str(path), "--soccfg", str(tmp_path / "other.json"))
    body = json.loads(done.stdout)
    assert body["FirmwareMatches"] is False
    assert body["WorkloadFirmware"] != body["SoccfgFirmware"]
    text = cli("estimate", str(path), "--soccfg", str(tmp_path / "other.json")).stdout
    assert "warning" in text and body["SoccfgFirmware"] in text


def test_the_estimate_says_where_it_cannot_see(sweep_file, tmp_path):
    path, _ = sweep_file
    entries = read_workload(path)
    # a timeline advance by a register value and a conditional branch
    entries[0].dump["prog_list"].append({"CMD": "TIME", "C_OP": "inc_ref", "R1": "r3"})
    entries[0].dump["prog_list"].append({"CMD": "JUMP", "IF": "NZ", "ADDR": "&3"})
    write_workload(tmp_path / "blind.json.gz", entries)
    body = json.loads(cli("--json", "estimate", str(tmp_path / "blind.json.gz")).stdout)
    assert body["Exact"] is False
    assert body["Programs"][0]["BlindSpots"] == ["a conditional branch",
                                                 "a timeline advance by a register value"]
    assert body["Programs"][1]["BlindSpots"] == []
    text = cli("estimate", str(tmp_path / "blind.json.gz")).stdout
    assert "at least" in text and "a conditional branch" in text


def test_v1_workload_estimate(tmp_path):
    board = open_board("simulated", "zcu216-v1")
    wm = WorkloadManager(board.soccfg)
    wm.add(LoopV1(board.soccfg, {"gen": 0, "freq": 300.0, "ro_len": 100, "reps": 50}))
    wm.write(tmp_path / "v1.json.gz")
    body = json.loads(cli("--json", "estimate", str(tmp_path / "v1.json.gz")).stdout)
    assert body["TotalSeconds"] == pytest.approx(wm.estimate().seconds)
    assert body["TimingClockMHz"] == pytest.approx(zcu216_v1()["tprocs"][0]["f_time"])


def test_an_original_format_workload_needs_a_soccfg(sweep_file, tmp_path):
    path, _ = sweep_file
    items = json.loads(gzip.decompress(path.read_bytes()))
    for item in items:
        del item["qickwork"]  # what the original SideQICK client writes
    (tmp_path / "orig.json.gz").write_bytes(gzip.compress(json.dumps(items).encode()))
    done = cli("estimate", str(tmp_path / "orig.json.gz"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--device ID" in done.stderr and "--soccfg FILE" in done.stderr
    (tmp_path / "cfg.json").write_text(json.dumps(zcu216_v2()))
    ok = cli("--json", "estimate", str(tmp_path / "orig.json.gz"), "--soccfg",
             str(tmp_path / "cfg.json"))
    assert ok.returncode == 0 and json.loads(ok.stdout)["FirmwareMatches"] is None


@pytest.mark.parametrize("content, message", [
    (b"not gzip", "not a gzip file"), (None, "no such workload file")])
def test_bad_files_are_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.gz"
    if content is not None:
        path.write_bytes(content)
    done = cli("estimate", str(path))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    bad_cfg = tmp_path / "cfg.json"
    bad_cfg.write_text("{nope")
    done = cli("estimate", str(path), "--soccfg", str(bad_cfg))
    assert done.returncode == 2 and "is not JSON" in done.stderr


def test_submit_without_device_or_estimate_is_a_usage_error(sweep_file):
    done = cli("submit", str(sweep_file[0]))
    assert done.returncode == 2 and "--device" in done.stderr


def test_estimate_with_device_fetches_its_soccfg(sweep_file, queue_service, tmp_path):
    path, wm = sweep_file
    world = World(queue_service)
    device = world.device("board-v1")
    # the board uploads a v1 configuration: the v2 programs are another firmware
    url = device.heartbeat().json()["UploadUrl"]
    assert put_file(url, json.dumps(zcu216_v1()).encode()).status_code == 200
    user, _ = world.user()
    conf = tmp_path / "user.conf"
    conf.write_text(f"[service]\napi_endpoint = {queue_service.url}\n"
                    f"[user]\napi_key = {user.token}\n")
    done = cli("--json", "estimate", str(path), "--device", device.id, config=conf)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["Source"] == f"device {device.id}" and body["FirmwareMatches"] is False
    assert body["TimingClockMHz"] == pytest.approx(zcu216_v1()["tprocs"][0]["f_time"])
    # nothing was submitted
    assert user.get("/workloads").json()["Items"] == []
    # a device that never uploaded its configuration: a clear error
    silent = world.device("silent")
    done = cli("estimate", str(path), "--device", silent.id, config=conf)
    assert done.returncode == 4 and "has not uploaded its configuration" in done.stderr
