"""WorkloadManager: the direct API, the original do_stuff protocol, results paired with programs."""
from __future__ import annotations

import numpy as np
import pytest

from executor.runner import open_board, run_workload
from executor.simboard import Resonator
from qickwork import FirmwareMismatch, InvalidWorkload, WorkloadTooLarge, read_workload
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
    """The original SideQICK protocol: attributes set before super().__init__, which calls
    do_stuff(make_progs=True); write_progs and read_results call it again with their flag."""
    board = open_board("simulated", "zcu216-v1", seed=1, resonator=Resonator(f0=300.0))
    calls = []

    class Sweep(WorkloadManager):
        def __init__(self, soccfg, freqs):
            self.freqs = freqs
            self.seen = []
            super().__init__(soccfg)

        def do_stuff(self, make_progs=False, write_progs=False, read_results=False):
            calls.append((make_progs, write_progs, read_results))
            for f in self.freqs:
                if make_progs:
                    self.add_program(LoopV1(self.soccfg, {"gen": 1, "ro_len": 100, "freq": f,
                                                          "reps": 5, "rounds": 2}))
                    continue
                prog = next(self.prog_iterator)
                if write_progs:
                    self.add_acquire(prog, save_raw=True)
                if read_results:
                    res = next(self.result_iterator)
                    self.seen.append((prog.cfg["freq"], res["avg"][...].shape,
                                      res["raw"][...].shape))

    wm = Sweep(board.soccfg, [290.0, 300.0, 310.0])
    assert calls == [(True, False, False)] and len(wm.proglist) == 3 and wm.progdicts == []
    assert wm.write_progs(tmp_path / "w.gz") is None
    assert calls[-1] == (False, True, False)
    written = read_workload(tmp_path / "w.gz")
    assert [(e.acqtype, e.save_raw, e.acquire.rounds) for e in written] == \
        [("accumulated", True, 2)] * 3
    assert all(e.firmware == board.fingerprint for e in written)  # our checks stay in the file
    assert [d["acqtype"] for d in wm.progdicts] == ["accumulated"] * 3
    wm.write_progs(tmp_path / "again.gz")       # writing twice does not duplicate programs
    assert len(read_workload(tmp_path / "again.gz")) == 3
    assert run_workload(str(tmp_path / "w.gz"), str(tmp_path / "r.h5"), board).status == "DONE"
    reader = Sweep(board.soccfg, [290.0, 300.0, 310.0])  # a fresh session rebuilds the programs
    pairs = list(reader.read_results(tmp_path / "r.h5"))
    assert calls[-1] == (False, False, True)
    assert reader.seen == [(f, (1, 1, 2), (1, 5, 2)) for f in (290.0, 300.0, 310.0)]
    assert [p for p, _ in pairs] == reader.proglist      # and our pairs are returned too
    assert [r.raw[0].shape for _, r in pairs] == [(5, 1, 2)] * 3   # qick's get_raw() shape


def test_write_progs_without_a_path_returns_an_open_temporary_file(board):
    class One(WorkloadManager):
        def do_stuff(self, make_progs=False, write_progs=False, read_results=False):
            if make_progs:
                self.add_program(SweepV2(self.soccfg, reps=2, final_delay=1.0,
                                         cfg={"freq": 150.0}))
                return
            prog = next(self.prog_iterator)
            if write_progs:
                self.add_decimated(prog)

    with One(board.soccfg).write_progs() as f:
        assert f.tell() == 0
        entries = read_workload(f.read())
    assert [e.acqtype for e in entries] == ["decimated"] and f.closed


def test_submit_writes_a_workload_and_hands_it_to_create_work(board):
    class RecordingClient:  # stands in for userclient.UserClient.create_work (its contract)
        def create_work(self, workloadfile, device_id, priority, *, name=None):
            self.entries = read_workload(workloadfile.read())
            workloadfile.close()
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


def test_errors_say_what_to_do(board, tmp_path):
    """The checks of ``add`` and ``write`` (kept when the original protocol replaced our
    do_stuff actions): an empty workload, another firmware, a buffer too small."""
    wm = WorkloadManager(board.soccfg)
    with pytest.raises(InvalidWorkload, match="holds no programs"):
        wm.write(tmp_path / "w.gz")
    assert not (tmp_path / "w.gz").exists()
    with pytest.raises(InvalidWorkload, match="holds no programs"):
        wm.write_progs()                       # the base class's do_stuff adds nothing
    other = open_board("simulated", "zcu216-v2", seed=1)
    other.soccfg["readouts"][0]["buf_maxlen"] = 1024
    prog = SweepV2(other.soccfg, reps=1, final_delay=1.0, cfg={"freq": 150.0})
    with pytest.raises(FirmwareMismatch, match="compiled for another board configuration"):
        wm.add(prog)
    big = SweepV2(board.soccfg, reps=100, final_delay=1.0, cfg={"freq": 150.0})
    with pytest.raises(WorkloadTooLarge, match="program 0: decimated readout 0 needs"):
        wm.add(big, acqtype="decimated")
    assert len(wm) == 0 and wm.progdicts == []
