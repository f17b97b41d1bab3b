"""Our board configurations against the real ones: same structure where qick reads it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from qick import QickConfig

from executor.boards import BOARDS, board_config, load_soccfg_json, zcu216_v1, zcu216_v2
from qickwork.errors import WorkloadError
from qickwork.firmware import fingerprint, tproc_version
from tests.qick.conftest import reference
from tests.qick.programs import LoopV1, QickSweep1D, SweepV2

pytestmark = pytest.mark.device310  # device-side code: also run under the board's Python 3.10

OPTIONAL = {"tmux_ch"}
PAIRS = [(zcu216_v2, "soccfg_testbench_zcu216_tprocv2.json"),
         (zcu216_v1, "soccfg_houcklab_zcu216_tprocv1.json")]


@pytest.mark.parametrize("build,ref_name", PAIRS)
def test_our_configs_have_the_reference_key_structure(build, ref_name):
    ours, ref = build(), json.loads(reference(ref_name).read_text())
    assert set(ref) <= set(ours)
    for section in ("gens", "readouts"):
        ref_types = {}
        for item in ref[section]:
            ref_types.setdefault(item.get("type", item.get("ro_type")), set(item))
        for item in ours[section]:
            kind = item.get("type", item.get("ro_type"))
            if kind in ref_types:
                # tmux_ch is optional in qick (read with .get): only for tProc-muxed ports
                assert set(item) - OPTIONAL == ref_types[kind] - OPTIONAL, \
                    f"{section} {kind} keys differ"
    assert ours["tprocs"][0]["type"] == ref["tprocs"][0]["type"]
    assert set(ours["tprocs"][0]) == set(ref["tprocs"][0])
    assert set(ours["rf"]) >= set(ref["rf"])
    for rocfg in ours["readouts"]:
        assert rocfg["adc"] in ours["rf"]["adcs"]
    for gen in ours["gens"]:
        assert gen["dac"] in ours["rf"]["dacs"]
        assert gen["fs"] == ours["rf"]["dacs"][gen["dac"]]["fs"]


def test_named_boards_build_qickconfigs_and_print():
    for name in BOARDS:
        cfg = QickConfig(board_config(name))
        assert "tProc" in str(cfg)  # description works (needs rf.dac_power)


def test_a_v2_program_written_for_the_reference_board_compiles_on_ours():
    ref = QickConfig(str(reference("soccfg_testbench_zcu216_tprocv2.json")))
    ours = QickConfig(zcu216_v2())
    cfg = {"freq": QickSweep1D("f", 100, 200), "steps": 11}
    a = SweepV2(ref, reps=5, final_delay=1.0, cfg=cfg)
    b = SweepV2(ours, reps=5, final_delay=1.0, cfg=cfg)
    assert tproc_version(ours) == 2
    assert len(a.binprog["pmem"]) == len(b.binprog["pmem"])


def test_a_v1_program_written_for_the_reference_board_compiles_on_ours():
    ref = QickConfig(str(reference("soccfg_houcklab_zcu216_tprocv1.json")))
    ours = QickConfig(zcu216_v1())
    cfg = {"gen": 1, "ro_len": 100, "freq": 300.0, "reps": 10}
    a, b = LoopV1(ref, cfg), LoopV1(ours, cfg)
    # same firmware family: the same instructions, bit for bit
    assert np.array_equal(np.array(a.binprog), np.array(b.binprog))


def test_loading_a_real_board_dump(tmp_path):
    path = reference("soccfg_emulator_zcu216_tprocv2_16gen.json")
    cfg = load_soccfg_json(path)
    assert len(cfg["gens"]) == 16
    assert fingerprint(cfg) == fingerprint(json.loads(path.read_text()))
    assert fingerprint(cfg) != fingerprint(zcu216_v2())


def test_fingerprint_ignores_descriptive_fields():
    a, b = zcu216_v2(), zcu216_v2()
    b["sw_version"] = "9.9.9"
    b["extra_description"] = ["other text"]
    assert fingerprint(a) == fingerprint(b)
    b["readouts"][0]["buf_maxlen"] = 1024
    assert fingerprint(a) != fingerprint(b)


def test_bad_board_inputs_say_what_to_do(tmp_path):
    with pytest.raises(WorkloadError, match="unknown simulated board 'zcu999'.*zcu216-v1"):
        board_config("zcu999")
    bad = tmp_path / "cfg.json"
    bad.write_text("{not json")
    with pytest.raises(WorkloadError, match="not valid JSON.*dump_cfg"):
        load_soccfg_json(bad)
    bad.write_text('{"board": "ZCU216"}')
    with pytest.raises(WorkloadError, match="lacks gens"):
        load_soccfg_json(bad)
    with pytest.raises(WorkloadError, match="cannot read"):
        load_soccfg_json(tmp_path / "missing.json")
