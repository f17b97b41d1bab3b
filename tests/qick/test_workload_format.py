"""Workload files: round trips, compatibility with the original format, hostile input."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from qick.helpers import progs2json

from executor.boards import zcu216_v1, zcu216_v2
from qickwork import (FirmwareMismatch, InvalidWorkload, WorkloadTooLarge, check_firmware,
                      dumps_workload, entry_for, estimate_dump, make_program, read_workload,
                      write_workload)
from tests.qick.programs import LoopV1, QickSweep1D, SweepV2

pytestmark = pytest.mark.device310  # device-side code: also run under the board's Python 3.10


def _v2_progs(soc, n=3):
    return [SweepV2(soc, reps=5, final_delay=1.0, cfg={"freq": 100.0 + 10 * k}) for k in range(n)]


def test_v2_round_trip_gives_identical_binaries(soc2, tmp_path):
    progs = _v2_progs(soc2) + [SweepV2(soc2, reps=3, final_delay=1.0,
                                       cfg={"freq": QickSweep1D("f", 100, 200), "steps": 5})]
    path = tmp_path / "w.json.gz"
    write_workload(path, [entry_for(p, soc2, rounds=2, threshold=1.5) for p in progs])
    entries = read_workload(path)
    assert [e.acquire.rounds for e in entries] == [2] * 4
    assert entries[0].acquire.threshold == 1.5
    for prog, entry in zip(progs, entries):
        loaded = make_program(entry, soc2)
        for mem in ("pmem", "dmem", "wmem"):
            a, b = prog.binprog[mem], loaded.binprog[mem]
            assert (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b))


def test_v1_round_trip_uses_a_fresh_program_per_dump(soc1, tmp_path):
    progs = [LoopV1(soc1, {"gen": 1, "ro_len": 100, "freq": f, "reps": 10})
             for f in (250.0, 300.0, 350.0)]
    path = tmp_path / "w.json.gz"
    write_workload(path, [entry_for(p, soc1) for p in progs])
    loaded = [make_program(e, soc1) for e in read_workload(path)]
    for prog, back in zip(progs, loaded):
        assert np.array_equal(np.array(prog.binprog), np.array(back.binprog))
    # the programs differ (regression: a reused v1 object keeps the first binary)
    assert not np.array_equal(np.array(loaded[0].binprog), np.array(loaded[2].binprog))


def test_original_format_workloads_still_read(soc2, tmp_path):
    dumps = []
    for p in _v2_progs(soc2, 2):
        d = p.dump_prog()
        d.update({"acqtype": "accumulated", "save_raw": True, "save_shots": False})
        dumps.append(d)
    path = tmp_path / "old.json.gz"
    path.write_bytes(gzip.compress(progs2json(dumps).encode()))
    entries = read_workload(path)
    assert [e.format_version for e in entries] == [None, None]
    assert entries[0].save_raw and entries[0].acquire.rounds == 1
    check_firmware(entries, soc2)  # no fingerprint: only the tProc version is checked
    make_program(entries[1], soc2)


def test_extra_keys_are_ignored_by_the_original_reader(soc2):
    data = json.loads(gzip.decompress(dumps_workload([entry_for(_v2_progs(soc2, 1)[0], soc2)])))
    assert data[0]["acqtype"] == "accumulated" and "qickwork" in data[0]
    assert data[0]["qickwork"]["format"] == 1 and data[0]["qickwork"]["firmware"].startswith("sha256:")


def test_firmware_mismatch_names_both_firmwares(soc2, tmp_path):
    other = zcu216_v2()
    other["readouts"][0]["buf_maxlen"] = 2048
    entries = [entry_for(_v2_progs(soc2, 1)[0], soc2)]
    with pytest.raises(FirmwareMismatch, match=r"program 0 was compiled for firmware ZCU216 "
                       r"tProc v2 \(built simulated zcu216-v2, sha256:\w+\), but this board "
                       r"runs ZCU216 tProc v2 .*compile the programs again"):
        check_firmware(entries, other)
    with pytest.raises(FirmwareMismatch, match="tProc v2 program compiled for firmware .*tProc v2.*, but this board runs .*v1"):
        check_firmware(entries, zcu216_v1())


@pytest.mark.parametrize("content,message", [
    (b"this is not gzip", "not a gzip file"),
    (gzip.compress(b"{not json", mtime=0), "not valid JSON"),
    (gzip.compress(b'{"a": 1}', mtime=0), "JSON list of program dumps"),
    (gzip.compress(b"[]", mtime=0), "holds no programs"),
    (gzip.compress(b"[1]", mtime=0), "program 0: is not a program dump"),
    (gzip.compress(b'[{"envelopes": []}]', mtime=0), "program 0: the dump lacks ro_chs"),
    (gzip.compress(b"[" * 100000, mtime=0), "not valid JSON"),
])
def test_corrupt_workloads_are_refused_with_a_message(content, message):
    with pytest.raises(InvalidWorkload, match=message):
        read_workload(content)


def test_truncated_gzip_is_refused(soc2):
    data = dumps_workload([entry_for(_v2_progs(soc2, 1)[0], soc2)])
    with pytest.raises(InvalidWorkload, match="truncated"):
        read_workload(data[: len(data) // 2])


def test_gzip_bomb_stops_at_the_cap():
    bomb = gzip.compress(b" " * (20 * 1024 * 1024))
    with pytest.raises(WorkloadTooLarge, match="decompresses to more than 1048576 bytes"):
        read_workload(bomb, max_bytes=1024 * 1024)


def test_too_many_programs_is_refused(soc2):
    data = dumps_workload([entry_for(p, soc2) for p in _v2_progs(soc2, 3)])
    with pytest.raises(WorkloadTooLarge, match="3 programs, over the board's limit of 2"):
        read_workload(data, max_programs=2)


def _tamper(soc, change):
    d = dict(entry_for(_v2_progs(soc, 1)[0], soc).to_file_dict())
    d = json.loads(progs2json([d]))
    change(d[0])
    return gzip.compress(json.dumps(d).encode())


def test_object_dtypes_are_refused(soc2):
    def put_object_array(d):
        d["envelopes"][0]["envs"]["evil"] = {"data": ["gASVAAAAAAAAAA==", [1], "|O"], "addr": 0}
    with pytest.raises(InvalidWorkload, match="dtype '|O'.*no pickle"):
        read_workload(_tamper(soc2, put_object_array))


def test_array_shape_must_match_its_bytes(soc2):
    def lie_about_shape(d):
        d["envelopes"][0]["envs"]["x"] = {"data": ["AAAAAA==", [1000000, 2], "<i2"], "addr": 0}
    with pytest.raises(InvalidWorkload, match="does not match its shape"):
        read_workload(_tamper(soc2, lie_about_shape))


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(acqtype="weird"), "acqtype must be"),
    (lambda d: d.update(loop_dims=[0]), "loop_dims must be a list of positive integers"),
    (lambda d: d["qickwork"]["acquire"].update(rounds=0), "rounds must be a positive integer"),
    (lambda d: d["qickwork"]["acquire"].update(threshold="x"), "threshold must be a number"),
])
def test_bad_fields_name_the_program(soc2, change, message):
    with pytest.raises(InvalidWorkload, match="program 0: " + message):
        read_workload(_tamper(soc2, change))


def test_estimate_counts_time_advances_times_shots_and_rounds(soc2, soc1):
    prog = SweepV2(soc2, reps=100, final_delay=10.0,
                   cfg={"freq": QickSweep1D("f", 100, 200), "steps": 10})
    est = estimate_dump(prog.dump_prog(), soc2.get_cfg(), rounds=3)
    # about 10.5 us per shot (pulse + final delay 10 us) x 1000 shots x 3 rounds
    assert est.shots == 1000 and est.exact
    assert 0.9 * 10.4e-6 * 3000 < est.seconds < 1.2 * 10.6e-6 * 3000
    v1 = LoopV1(soc1, {"gen": 1, "ro_len": 100, "freq": 300.0, "reps": 50})
    e1 = estimate_dump(v1.dump_prog(), soc1.get_cfg())
    f_time = soc1["tprocs"][0]["f_time"]
    assert e1.seconds == pytest.approx((200 + 50 * 1050) / f_time * 1e-6)


def test_estimate_says_where_it_is_blind(soc2):
    dump = SweepV2(soc2, reps=2, final_delay=1.0, cfg={"freq": 100.0}).dump_prog()
    dump = dict(dump, prog_list=list(dump["prog_list"]) + [
        {"CMD": "TIME", "C_OP": "inc_ref", "R1": "r3", "P_ADDR": 999},
        {"CMD": "JUMP", "IF": "Z", "ADDR": "s15", "P_ADDR": 1000}])
    est = estimate_dump(dump, soc2.get_cfg())
    assert not est.exact
    assert "a timeline advance by a register value" in est.blind_spots
    assert "a conditional branch" in est.blind_spots


def test_a_file_that_is_not_a_results_file_says_so(tmp_path):
    import h5py

    from qickwork import InvalidResults, read_results
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_group("data").create_group("calibration")
    with pytest.raises(InvalidResults, match="not a results file.*'calibration'"):
        read_results(path)
