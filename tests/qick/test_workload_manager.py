"""WorkloadManager: the direct API, the original do_stuff protocol, results paired with programs."""
from __future__ import annotations

import numpy as np
import pytest

from executor.runner import open_board, run_workload
from executor.simboard import Resonator
from qickwork import FirmwareMismatch, InvalidWorkload, TooLarge, read_workload
from tests.qick.programs import LoopV1, QickSweep1D, SweepV2
from userclient.workload import WorkloadManager


@pytest.fixture
def board():
    return open_board("simulated", "zcu216-v2", seed=5, resonator=Resonator(f0=150.0))


def test_direct_api_round_trip_with_qick_shapes(board, tmp_path):
    wm = WorkloadManager(board.soccfg)
    sweep = SweepV2(board.soccfg, reps=10, final_delay=1.0,
                    cfg={"freq": QickSweep1D("f", 140, 160), "steps": 21})
    single = SweepV2(board.soccfg, reps=3, final_delay=1.0, cfg={"freq": 150.0})
    wm.add(sweep, rounds=2, save_raw=True)
    wm.add(single, acqtype="decimated")
    est = wm.estimate()
    assert est.seconds > 0 and est.exact
    wm.write(tmp_path / "w.gz")
    assert run_workload(str(tmp_path / "w.gz"), str(tmp_path / "r.h5"), board).status == "DONE"
    pairs = list(wm.read_results(tmp_path / "r.h5"))
    assert [p for p, _ in pairs] == [sweep, single]
    (p0, r0), (p1, r1) = pairs
    assert [a.shape for a in r0.avg] == [(1, 21, 2)]
    assert [a.shape for a in r0.raw] == [(10, 21, 1, 2)]
    assert [a.shape for a in r1.dec] == [(3, single.ro_chs[0]["length"], 2)]
    mag = np.abs(r0.data[0][0, :, 0] + 1j * r0.data[0][0, :, 1])
    assert abs(np.linspace(140, 160, 21)[np.argmin(mag)] - 150) <= 1


def test_original_do_stuff_protocol_with_v1_programs(tmp_path):
    board = open_board("simulated", "zcu216-v1", seed=1, resonator=Resonator(f0=300.0))
    seen = []

    class Sweep(WorkloadManager):
        def make_progs(self):
            return [(LoopV1(self.soccfg, {"gen": 1, "ro_len": 100, "freq": f, "reps": 5}),
                     "accumulated", True, False) for f in (290.0, 300.0, 310.0)]

        def process_result(self, index, prog, result):
            seen.append((index, prog.cfg["freq"], result.avg[0].shape))

    wm = Sweep(board.soccfg)
    wm.do_stuff("make_progs")
    wm.do_stuff("write_progs", tmp_path / "w.gz")
    assert run_workload(str(tmp_path / "w.gz"), str(tmp_path / "r.h5"), board).status == "DONE"
    reader = Sweep(board.soccfg)       # a fresh session rebuilds the programs to pair them
    pairs = reader.do_stuff("read_results", tmp_path / "r.h5")
    assert [s[:2] for s in seen] == [(0, 290.0), (1, 300.0), (2, 310.0)]
    assert len(pairs) == 3 and pairs[0][1].raw is not None


def test_errors_say_what_to_do(board, tmp_path):
    wm = WorkloadManager(board.soccfg)
    with pytest.raises(InvalidWorkload, match="holds no programs"):
        wm.write(tmp_path / "w.gz")
    with pytest.raises(InvalidWorkload, match="unknown action 'dance'"):
        wm.do_stuff("dance")
    with pytest.raises(NotImplementedError, match="define make_progs"):
        wm.do_stuff("make_progs")
    other = open_board("simulated", "zcu216-v2", seed=1)
    other.soccfg["readouts"][0]["buf_maxlen"] = 1024
    prog = SweepV2(other.soccfg, reps=1, final_delay=1.0, cfg={"freq": 150.0})
    with pytest.raises(FirmwareMismatch, match="compiled for another board configuration"):
        wm.add(prog)
    big = SweepV2(board.soccfg, reps=100, final_delay=1.0, cfg={"freq": 150.0})
    with pytest.raises(TooLarge, match="program 0: decimated readout 0 needs"):
        wm.add(big, acqtype="decimated")


def test_submit_writes_a_workload_and_hands_it_to_create_work(board):
    class RecordingClient:  # stands in for userclient.UserClient.create_work (its contract)
        def create_work(self, device_id, path, priority, *, name=None):
            self.entries = read_workload(path)
            self.args = (device_id, priority, name)
            return "work-1"

    wm = WorkloadManager(board.soccfg)
    wm.add(SweepV2(board.soccfg, reps=1, final_delay=1.0, cfg={"freq": 150.0}), rounds=4)
    client = RecordingClient()
    assert wm.submit(client, "dev-1", "HIGH", name="sweep") == "work-1"
    assert client.args == ("dev-1", "HIGH", "sweep")
    assert client.entries[0].acquire.rounds == 4


def test_a_sweep_hashes_the_boards_soccfg_once_not_per_program(board, monkeypatch):
    """Regression: each add() hashed the soccfg four times (the firmware check, the
    fingerprint, and again inside the firmware's name): 0.5 s for a 1001-program sweep."""
    import hashlib

    import qickwork.firmware as firmware
    calls = []

    class CountingHashlib:
        @staticmethod
        def sha256(data: bytes):
            calls.append(len(data))
            return hashlib.sha256(data)

    monkeypatch.setattr(firmware, "hashlib", CountingHashlib)
    wm = WorkloadManager(board.soccfg)
    for k in range(20):
        wm.add(SweepV2(board.soccfg, reps=2, final_delay=1.0, cfg={"freq": 140.0 + k}))
    assert len(calls) == 1
    expected = firmware.firmware_info(board.config_dict)
    assert {(e.firmware, e.firmware_name, e.f_time) for e in wm.entries} == \
        {(expected.fingerprint, expected.name, expected.f_time)}
    # a program compiled with another (equal) soccfg object is still compared by firmware
    other = open_board("simulated", "zcu216-v2", seed=6).soccfg
    wm.add(SweepV2(other, reps=2, final_delay=1.0, cfg={"freq": 150.0}))
    v1 = open_board("simulated", "zcu216-v1", seed=6).soccfg
    with pytest.raises(FirmwareMismatch):
        wm.add(LoopV1(v1, {"gen": 0, "freq": 300.0, "ro_len": 100, "reps": 2}))
