"""run_workload: qick's own code paths on the simulated board, results as HDF5, failures."""
from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest
from qick.helpers import progs2json

from boardcore.limits import RunLimits
from executor.boards import zcu216_v2
from executor.runner import open_board, run_workload
from executor.simboard import Resonator
from qickwork import entry_for, read_results, write_workload
from qickwork.errors import WorkloadError
from tests.qick.conftest import reference
from tests.qick.programs import LoopV1, QickSweep1D, SweepV2

pytestmark = pytest.mark.device310  # device-side code: also run under the board's Python 3.10


@pytest.fixture
def board():
    return open_board("simulated", "zcu216-v2", seed=2, resonator=Resonator(f0=150.0))


def _write(path, board, progs, **kw):
    write_workload(path, [entry_for(p, board.soccfg, **kw) for p in progs])
    return str(path)


def test_accumulated_results_equal_what_qick_acquire_returns(board, tmp_path):
    sweep = SweepV2(board.soccfg, reps=10, final_delay=1.0,
                    cfg={"freq": QickSweep1D("f", 100, 200), "steps": 5})
    wl = _write(tmp_path / "w.gz", board, [sweep], rounds=2, save_raw=True, save_shots=True,
                threshold=100.0)
    progress = []
    out = run_workload(wl, str(tmp_path / "r.h5"), board,
                       progress=lambda d, t: progress.append((d, t)))
    assert (out.status, out.programs_done, out.programs_total) == ("DONE", 1, 1)
    assert progress == [(0, 1), (1, 1)]
    res = read_results(tmp_path / "r.h5")
    direct = sweep.acquire(board.soc, rounds=2, threshold=100.0, progress=False)
    p = res.programs[0]
    assert [a.shape for a in p.avg] == [a.shape for a in direct]
    assert [a.shape for a in p.raw] == [a.shape for a in sweep.get_raw()]
    assert [a.shape for a in p.shots] == [a.shape for a in sweep.get_shots()]
    assert res.attrs["status"] == "DONE" and res.attrs["firmware"] == board.fingerprint


def test_a_sweep_of_programs_shows_the_resonance(board, tmp_path):
    freqs = np.linspace(140, 160, 21)
    progs = [SweepV2(board.soccfg, reps=20, final_delay=1.0, cfg={"freq": f}) for f in freqs]
    out = run_workload(_write(tmp_path / "w.gz", board, progs), str(tmp_path / "r.h5"), board)
    assert out.status == "DONE"
    mags = [abs(p.avg[0][0, 0] + 1j * p.avg[0][0, 1]) for p in read_results(tmp_path / "r.h5")]
    assert abs(freqs[int(np.argmin(mags))] - 150.0) <= 1.0


def test_original_format_workload_runs_and_reads_like_the_original(board, tmp_path):
    dumps = []
    for acqtype in ("accumulated", "decimated"):
        prog = SweepV2(board.soccfg, reps=1, final_delay=1.0, cfg={"freq": 120.0})
        d = prog.dump_prog()
        d.update({"acqtype": acqtype, "save_raw": True, "save_shots": False})
        dumps.append(d)
    wl = tmp_path / "old.gz"
    wl.write_bytes(gzip.compress(progs2json(dumps).encode()))
    assert run_workload(str(wl), str(tmp_path / "r.h5"), board).status == "DONE"
    with h5py.File(tmp_path / "r.h5", "r") as f:   # the original reader's view
        assert list(f["data"].keys()) == ["0", "1"]
        assert set(f["data"]["0"].keys()) == {"avg", "raw"}
        assert f["data"]["0"]["raw"].compression == "lzf"
        assert f["data"]["1"]["dec"].shape == (1, dumps[1]["ro_chs"][0]["length"], 2)


def test_decimated_over_length_fails_before_running(board, tmp_path):
    big = SweepV2(board.soccfg, reps=20, final_delay=1.0, cfg={"freq": 120.0})
    wl = _write(tmp_path / "w.gz", board, [big], acqtype="decimated")
    out = run_workload(wl, str(tmp_path / "r.h5"), board)
    assert out.status == "FAILED" and out.error_kind == "too_large"
    assert "program 0: decimated readout 0 needs" in out.error_message
    assert "shorten the readout or use fewer reps" in out.error_message
    assert read_results(tmp_path / "r.h5").attrs["error_kind"] == "too_large"


def test_firmware_mismatch_fails_with_both_names(board, tmp_path):
    ref = open_board("simulated", soccfg_json=str(reference(
        "soccfg_emulator_zcu216_tprocv2_16gen.json")))
    prog = SweepV2(ref.soccfg, reps=2, final_delay=1.0, cfg={"freq": 120.0})
    out = run_workload(_write(tmp_path / "w.gz", ref, [prog]), str(tmp_path / "r.h5"), board)
    assert out.status == "FAILED" and out.error_kind == "firmware_mismatch"
    assert "built Sat Sep 28 22:15:40 2024" in out.error_message
    assert "built simulated zcu216-v2" in out.error_message


@pytest.mark.parametrize("content,kind,message", [
    (b"garbage", "invalid_workload", "not a gzip file"),
    (gzip.compress(b"[{]", mtime=0), "invalid_workload", "not valid JSON"),
    (gzip.compress(b" " * 3_000_000), "too_large", "decompresses to more than"),
])
def test_bad_files_fail_cleanly(board, tmp_path, content, kind, message):
    wl = tmp_path / "w.gz"
    wl.write_bytes(content)
    out = run_workload(str(wl), str(tmp_path / "r.h5"), board,
                       limits=RunLimits(deadline_seconds=60, max_workload_bytes=2_000_000,
                                        max_result_bytes=2**30))
    assert (out.status, out.error_kind) == ("FAILED", kind)
    assert message in out.error_message


def test_limits_on_shots_and_channels(board, tmp_path):
    prog = SweepV2(board.soccfg, reps=8_000_000, final_delay=1.0, cfg={"freq": 120.0})
    out = run_workload(_write(tmp_path / "w.gz", board, [prog], rounds=200),
                       str(tmp_path / "r.h5"), board)
    assert out.error_kind == "too_large"
    assert ("program 0 runs 8000000 shots x 200 rounds, over the board's limit of 1000000000"
            in out.error_message)


def test_the_board_s_result_size_limit_reaches_the_checks(board, tmp_path):
    prog = SweepV2(board.soccfg, reps=100, final_delay=1.0, cfg={"freq": 120.0})
    wl = _write(tmp_path / "w.gz", board, [prog], save_shots=True, threshold=0.0)
    out = run_workload(wl, str(tmp_path / "r.h5"), board,
                       limits=RunLimits(deadline_seconds=60, max_workload_bytes=2**20,
                                        max_result_bytes=100))
    assert out.error_kind == "too_large"
    assert "over the board's limit of 100" in out.error_message


def test_a_failure_halfway_keeps_the_programs_done(board, tmp_path):
    good = [SweepV2(board.soccfg, reps=2, final_delay=1.0, cfg={"freq": f}) for f in (110, 120)]
    bad = SweepV2(board.soccfg, reps=1, final_delay=1.0, cfg={"freq": 120.0})
    entries = [entry_for(p, board.soccfg) for p in good]
    entries.append(entry_for(bad, board.soccfg, acqtype="decimated"))
    write_workload(tmp_path / "w.gz", entries)

    def dma_fails(*args, **kwargs):  # fault at the FPGA edge: the decimated DMA times out
        raise RuntimeError("DMA transfer timed out")
    board.soc.get_decimated = dma_fails
    out = run_workload(str(tmp_path / "w.gz"), str(tmp_path / "r.h5"), board)
    assert (out.status, out.error_kind, out.programs_done) == ("FAILED", "device_error", 2)
    assert out.error_message.startswith("program 2 failed while running")
    assert "DMA transfer timed out" in out.error_message
    res = read_results(tmp_path / "r.h5")
    assert len(res) == 2 and res.attrs["status"] == "FAILED"
    assert "program 2" in res.attrs["error_message"] and res.attrs["programs_done"] == 2


def test_cancel_between_programs_and_rounds(board, tmp_path):
    progs = [SweepV2(board.soccfg, reps=2, final_delay=1.0, cfg={"freq": f}) for f in (1, 2, 3)]
    wl = _write(tmp_path / "w.gz", board, progs, rounds=3)
    calls = []
    out = run_workload(wl, str(tmp_path / "r.h5"), board,
                       should_stop=lambda: calls.append(1) or len(calls) > 4)
    assert out.status == "CANCELLED" and out.programs_done == 1
    assert read_results(tmp_path / "r.h5").attrs["status"] == "CANCELLED"


def test_v1_workload_runs_on_the_v1_board(tmp_path):
    board = open_board("simulated", "zcu216-v1", seed=1)
    progs = [LoopV1(board.soccfg, {"gen": 1, "ro_len": 100, "freq": f, "reps": 10})
             for f in (250.0, 500.0)]
    out = run_workload(_write(tmp_path / "w.gz", board, progs), str(tmp_path / "r.h5"), board)
    assert out.status == "DONE"
    assert [p.avg[0].shape for p in read_results(tmp_path / "r.h5")] == [(1, 2), (1, 2)]


def test_open_board_errors():
    with pytest.raises(WorkloadError, match="unknown board kind 'fpga'"):
        open_board("fpga")
    with pytest.raises(WorkloadError, match="QickSoc only on the RFSoC"):
        open_board("qick")
    b = open_board("simulated", "zcu216-v2")
    assert b.config_dict["board"] == "ZCU216" and b.fingerprint.startswith("sha256:")
    assert b.config_dict == zcu216_v2() or b.config_dict["gens"] == zcu216_v2()["gens"]


def test_envelope_over_generator_memory_fails_before_running(board, tmp_path):
    prog = SweepV2(board.soccfg, reps=1, final_delay=1.0, cfg={"freq": 120.0})
    entry = entry_for(prog, board.soccfg)
    maxlen = board.soccfg["gens"][1]["maxlen"]
    entry.dump = dict(entry.dump, envelopes=[{"next_addr": 0, "envs": {}},
                      {"next_addr": 0, "envs": {"long": {
                          "data": np.zeros((maxlen + 16, 2), dtype=np.int16), "addr": 0}}}])
    write_workload(tmp_path / "w.gz", [entry])
    out = run_workload(str(tmp_path / "w.gz"), str(tmp_path / "r.h5"), board)
    assert out.error_kind == "too_large"
    assert f"envelope 'long' of generator 1 ends at sample {maxlen + 16}" in out.error_message


class FakeClock:
    """The runner's monotonic clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _five_programs(board, tmp_path, rounds=1):
    progs = [SweepV2(board.soccfg, reps=2, final_delay=1.0, cfg={"freq": f})
             for f in (110, 120, 130, 140, 150)]
    return _write(tmp_path / "w.gz", board, progs, rounds=rounds)


def _deadline(seconds):
    return RunLimits(deadline_seconds=seconds, max_workload_bytes=2**20, max_result_bytes=2**30)


def test_the_run_stops_at_its_deadline_between_programs_keeping_the_results_so_far(board,
                                                                                   tmp_path):
    clock = FakeClock()

    def ten_seconds_per_program(done, total):
        clock.now += 10  # program `done` took 10 s (the first call: reading the workload)

    out = run_workload(_five_programs(board, tmp_path), str(tmp_path / "r.h5"), board,
                       limits=_deadline(25), progress=ten_seconds_per_program, clock=clock)
    assert (out.status, out.error_kind, out.programs_done, out.programs_total) == \
        ("FAILED", "deadline", 2, 5)
    assert out.error_message.startswith("stopped at its deadline of 25 s after 2 of 5 programs")
    assert "longer deadline ([executor] deadline_seconds) or split the workload" in \
        out.error_message
    assert out.seconds == 30
    res = read_results(tmp_path / "r.h5")  # closed cleanly: readable, the outcome recorded
    assert len(res) == 2 and res.attrs["programs_done"] == 2
    assert (res.attrs["status"], res.attrs["error_kind"]) == ("FAILED", "deadline")


def test_a_run_whose_programs_all_ran_is_done_even_past_its_deadline(board, tmp_path):
    clock = FakeClock()
    out = run_workload(_five_programs(board, tmp_path), str(tmp_path / "r.h5"), board,
                       limits=_deadline(25), clock=clock,
                       progress=lambda done, total: setattr(clock, "now",
                                                            clock.now + 25 * (done == 5)))
    assert (out.status, out.programs_done) == ("DONE", 5)


def test_a_deadline_passed_before_the_first_program_runs_none(board, tmp_path):
    clock = FakeClock()
    out = run_workload(_five_programs(board, tmp_path), str(tmp_path / "r.h5"), board,
                       limits=_deadline(5), clock=clock,
                       progress=lambda done, total: setattr(clock, "now", clock.now + 6))
    assert (out.status, out.error_kind, out.programs_done) == ("FAILED", "deadline", 0)
    assert read_results(tmp_path / "r.h5").attrs["error_kind"] == "deadline"


def test_a_sigterm_stops_the_run_after_the_program_running(board, tmp_path):
    sigterms = []
    out = run_workload(_five_programs(board, tmp_path, rounds=3), str(tmp_path / "r.h5"), board,
                       progress=lambda done, total: done == 2 and sigterms.append(1),
                       terminations=lambda: len(sigterms))
    assert (out.status, out.error_kind, out.programs_done) == ("FAILED", "stopped", 2)
    assert out.error_message.startswith("the board stopped the run (SIGTERM) after 2 of 5")
    res = read_results(tmp_path / "r.h5")
    assert len(res) == 2 and (res.attrs["status"], res.attrs["error_kind"]) == \
        ("FAILED", "stopped")


def test_a_second_sigterm_stops_at_the_next_round_dropping_that_program(board, tmp_path):
    sigterms, started = [], []
    attach = board.soc.attach_program

    def two_sigterms_once_program_3_started(prog):  # after the runner's check between programs
        if all(prog is not p for p in started):
            started.append(prog)
            if len(started) == 4:
                sigterms.extend([1, 1])
        attach(prog)
    board.soc.attach_program = two_sigterms_once_program_3_started
    out = run_workload(_five_programs(board, tmp_path, rounds=3), str(tmp_path / "r.h5"), board,
                       terminations=lambda: len(sigterms))
    assert (out.status, out.error_kind, out.programs_done) == ("FAILED", "stopped", 3)
    assert out.error_message.startswith(
        "the board stopped the run (a second SIGTERM) during program 3; 3 of 5 completed")
    res = read_results(tmp_path / "r.h5")
    assert len(res) == 3 and res.attrs["status"] == "FAILED"


def test_a_cancel_wins_over_a_sigterm(board, tmp_path):
    out = run_workload(_five_programs(board, tmp_path), str(tmp_path / "r.h5"), board,
                       should_stop=lambda: True, terminations=lambda: 1)
    assert (out.status, out.programs_done) == ("CANCELLED", 0)


def test_a_cost_cap_shorter_than_the_deadline_stops_the_run_and_says_max_seconds(board,
                                                                                tmp_path):
    clock = FakeClock()
    limits = RunLimits(deadline_seconds=3600, max_workload_bytes=2**20,
                       max_result_bytes=2**30, max_seconds=15)

    def ten_seconds_per_program(done, total):
        clock.now += 10

    out = run_workload(_five_programs(board, tmp_path), str(tmp_path / "r.h5"), board,
                       limits=limits, progress=ten_seconds_per_program, clock=clock)
    assert (out.status, out.error_kind, out.programs_done) == ("FAILED", "deadline", 1)
    assert out.error_message.startswith("stopped at its MaxSeconds of 15 s (its cost cap) "
                                        "after 1 of 5 programs")
    assert "--max-seconds" in out.error_message
