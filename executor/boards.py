"""Board configurations ("soccfg") for the simulated board, built by our own code.

A QICK program is compiled against the exact firmware of its board: the dict a ``QickSoc``
reports with ``get_cfg()``. The simulated board needs such a dict too. This module builds
them from a few parameters of the RFSoC and of the firmware (sampling rates, tiles, buffer
sizes), for named boards:

    zcu216-v2   ZCU216, tProc v2 (``qick_processor`` revision 26): 4 full-speed generators
                on DAC tile 0, 4 interpolated generators (with mixer) on DAC tile 2,
                2 tProc-configured readouts on ADC tile 2
    zcu216-v1   ZCU216, tProc v1 (``axis_tproc64x32_x8``): 7 full-speed generators on DAC
                tiles 2/3, 2 PYNQ-configured readouts on ADC tile 2

``load_soccfg_json(path)`` reads instead the JSON a real board dumped (``soc.dump_cfg()``
or the device configuration the board uploads), so the simulated board can stand in for
that exact firmware.

Every dict here builds a ``qick.QickConfig`` with no board. The numbers follow the ZCU216's
RF data converter: a 245.76 MHz reference clock, DACs at 9584.64 or 6881.28 Msps, ADCs at
2457.6 Msps, 16 (DAC) or 8 (ADC) samples per fabric clock.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Callable

from qickwork.errors import WorkloadError

REFCLK = 245.76
QICK_SW_VERSION = "0.2.436"

# DAC tile settings: (fs_mult, fs_div) of the reference clock; fabric clock = fs/16.
_DAC_FAST = {"fs_mult": 39, "fs_div": 1}      # 9584.64 Msps
_DAC_SLOW = {"fs_mult": 56, "fs_div": 2}      # 6881.28 Msps
_ADC = {"fs_mult": 40, "fs_div": 4}           # 2457.6 Msps


def _fs(setting: dict) -> float:
    return round(REFCLK * setting["fs_mult"] / setting["fs_div"], 6)


def _tile(setting: dict, blocks: list[str], fabric_div: int) -> dict:
    fs = _fs(setting)
    return {"coupling": "AC", "fabric_div": fabric_div, "out_div": 1, "blocks": blocks,
            "f_ref": REFCLK, "ref_div": 1, "fs_mult": setting["fs_mult"],
            "fs_div": setting["fs_div"], "fs": fs, "f_fabric": fs / fabric_div,
            "f_out": fs / fabric_div}


def _dac_block(tile: int, block: int, setting: dict, interpolation: int) -> dict:
    fs = _fs(setting)
    return {"index": [tile, block], "coupling": "AC", "f_ref": REFCLK,
            "fs_mult": setting["fs_mult"], "fs_div": setting["fs_div"], "fs": fs,
            "f_fabric": fs / 16, "interpolation": interpolation,
            "datapath": 4 if interpolation == 1 else 1}


def _adc_block(tile: int, block: int) -> dict:
    fs = _fs(_ADC)
    return {"index": [tile, block], "coupling": "AC", "f_ref": REFCLK,
            "fs_mult": _ADC["fs_mult"], "fs_div": _ADC["fs_div"], "fs": fs,
            "f_fabric": fs / 8, "decimation": 1}


def _rf(dac_tiles: dict[int, tuple[dict, list[int], int]], adc_blocks: list[int],
        clk_groups: list, ) -> dict:
    """The ``rf`` section. ``dac_tiles``: tile -> (setting, blocks, interpolation)."""
    tiles = {"dac": {}, "adc": {}}
    dacs, adcs = {}, {}
    for tile, (setting, blocks, interp) in dac_tiles.items():
        names = [f"{tile}{b}" for b in range(4)]
        tiles["dac"][str(tile)] = _tile(setting, names, 16)
        for b in range(4):
            dacs[f"{tile}{b}"] = _dac_block(tile, b, setting, interp if b in blocks else 1)
    tiles["adc"]["2"] = _tile(_ADC, [f"2{b}" for b in adc_blocks], 8)
    for b in adc_blocks:
        adcs[f"2{b}"] = _adc_block(2, b)
    return {"type": "usp_rf_data_converter", "fullpath": "usp_rf_data_converter_0",
            "ip_type": 2, "hs_adc": False, "tiles": tiles, "dacs": dacs, "adcs": adcs,
            "clk_groups": clk_groups, "revision": 2, "version": "2.6",
            "dac_power": {}}


def _full_speed_gen(index: int, dac: str, setting: dict, tproc_ch: int, maxlen: int) -> dict:
    fs = _fs(setting)
    return {"type": "axis_signal_gen_v6", "fullpath": f"axis_signal_gen_v6_{index}",
            "maxlen": maxlen, "complex_env": True, "samps_per_clk": 16, "maxv_scale": 1.0,
            "has_dds": True, "b_dds": 32, "b_phase": 32, "maxv": 32766, "has_mixer": False,
            "revision": 4, "version": "1.0", "dac": dac, "fs": fs,
            "fs_mult": setting["fs_mult"], "fs_div": setting["fs_div"], "interpolation": 1,
            "f_fabric": fs / 16, "f_dds": fs, "fdds_div": setting["fs_div"],
            "tproc_ch": tproc_ch}


def _interpolated_gen(index: int, dac: str, setting: dict, tproc_ch: int, maxlen: int) -> dict:
    fs = _fs(setting)
    return {"type": "axis_sg_int4_v2", "fullpath": f"axis_sg_int4_v2_{index}",
            "maxlen": maxlen, "complex_env": True, "samps_per_clk": 1, "maxv_scale": 0.9,
            "has_dds": True, "b_dds": 32, "b_phase": 32, "maxv": 32766, "has_mixer": True,
            "revision": 9, "version": "1.0", "dac": dac, "fs": fs,
            "fs_mult": setting["fs_mult"], "fs_div": setting["fs_div"], "interpolation": 4,
            "f_fabric": fs / 16, "f_dds": fs / 4, "fdds_div": setting["fs_div"] * 4,
            "tproc_ch": tproc_ch}


def _readout_common(index: int, adc: str, avg_maxlen: int, buf_maxlen: int) -> dict:
    fs = _fs(_ADC)
    return {"avg_maxlen": avg_maxlen, "buf_maxlen": buf_maxlen, "has_weights": False,
            "adc": adc, "b_phase": 32, "fs": fs, "fs_mult": _ADC["fs_mult"],
            "fs_div": _ADC["fs_div"], "decimation": 1, "f_fabric": fs / 8, "f_dds": fs,
            "fdds_div": _ADC["fs_div"], "f_output": fs / 8, "b_dds": 32, "iq_offset": 0.0,
            "has_outsel": True, "avgbuf_type": "axis_avg_buffer", "avgbuf_version": "1.0",
            "avgbuf_fullpath": f"axis_avg_buffer_{index}", "avgbuf_revision": 7}


def _tproc_readout(index: int, adc: str, trigger_port: int) -> dict:
    ro = _readout_common(index, adc, avg_maxlen=8192, buf_maxlen=4096)
    ro.update({"has_edge_counter": False, "trigger_type": "tport",
               "trigger_port": trigger_port, "trigger_bit": 0, "tproc_ch": index,
               "tmux_ch": None, "tproc_ctrl": 4 + index, "ro_type": "axis_dyn_readout_v1",
               "ro_version": "1.0", "ro_fullpath": f"axis_dyn_readout_v1_{index}",
               "ro_revision": 3})
    del ro["tmux_ch"]
    return ro


def _pynq_readout(index: int, adc: str, trigger_bit: int) -> dict:
    ro = _readout_common(index, adc, avg_maxlen=16384, buf_maxlen=1024)
    ro.update({"has_edge_counter": False, "trigger_type": "output", "trigger_port": 0,
               "trigger_bit": trigger_bit, "tproc_ch": index, "ro_type": "axis_readout_v2",
               "ro_version": "1.0", "ro_fullpath": f"axis_readout_v2_{index}",
               "ro_revision": 8, "avgbuf_revision": 6})
    return ro


def _buffers(readout_paths: list[str], trig: Callable[[int], dict]) -> dict:
    return {
        "mr_buf": {"type": "mr_buffer_et", "fullpath": "mr_buffer_et_0", "maxlen": 8192,
                   "junk_len": 8, "readouts": readout_paths, "revision": 3, "version": "1.0",
                   **trig(0)},
        "ddr4_buf": {"type": "axis_buffer_ddr_v1", "fullpath": "ddr4/axis_buffer_ddr_v1_0",
                     "burst_len": 128, "junk_len": 401, "junk_nt": 4,
                     "readouts": readout_paths, "revision": 3, "version": "1.0",
                     "maxlen": 1 << 30, **trig(1)},
    }


def _pins(kind: str) -> list:
    if kind == "trig":
        return [["trig", i, 0, f"PMOD0_{i}_LS"] for i in range(8)]
    return [["output", 0, i, f"PMOD0_{i}_LS"] for i in range(8)]


def zcu216_v2() -> dict:
    """ZCU216 with tProc v2 (qick_processor rev 26), tProc-configured readouts."""
    t_clk = _fs(_DAC_SLOW) / 16
    gens = [_full_speed_gen(i, f"0{i}", _DAC_FAST, i, 65536 if i == 0 else 16384)
            for i in range(4)]
    gens += [_interpolated_gen(i, f"2{i}", _DAC_SLOW, 4 + i, 8192) for i in range(4)]
    readouts = [_tproc_readout(i, f"2{2 * i}", 10 + i) for i in range(2)]
    cfg = {
        "board": "ZCU216", "sw_version": QICK_SW_VERSION,
        "extra_description": ["simulated board (qick-queue executor.simboard)"],
        "fw_timestamp": "simulated zcu216-v2",
        "rf": _rf({0: (_DAC_FAST, [], 1), 1: (_DAC_SLOW, [], 1), 2: (_DAC_SLOW, [0, 1, 2, 3], 4)},
                  [0, 2],
                  [[["qick_processor_0", "timing clock"], ["dac", 1], ["dac", 2]],
                   [["dac", 0]], [["adc", 2]]]),
        "refclk_freq": REFCLK,
        **_buffers([r["avgbuf_fullpath"] for r in readouts],
                   lambda n: {"trigger_type": "tport", "trigger_port": 8 + n, "trigger_bit": 0}),
        "gens": gens, "iqs": [], "time_taggers": [], "readouts": readouts,
        "tprocs": [{
            "type": "qick_processor", "fullpath": "qick_processor_0", "pmem_size": 4096,
            "dmem_size": 16384, "wmem_size": 1024, "dreg_qty": 16, "in_port_qty": 8,
            "out_trig_qty": 20, "out_dport_qty": 1, "out_dport_dw": 8,
            "out_wport_qty": 16, "has_lfsr": 1, "has_divider": 1, "has_arith": 1,
            "has_time_read": 1, "has_qcom": 0, "has_custom_periph": 0, "has_io_ctrl": 1,
            "has_ext_flag": 0, "has_qnet": 0, "fifo_depth": 512, "call_depth": 255,
            "debug": 0,
            "clk_srcs": {"core clock": {"source": ["PS", 0], "f_clk": 200.0,
                                        "src_range": [66.66666666666667, 133.33333333333334]},
                         "timing clock": {"source": ["dac", 2], "f_clk": t_clk,
                                          "src_range": None}},
            "revision": 26, "version": "2.0", "f_core": 200.0, "f_time": t_clk,
            "output_pins": _pins("trig"), "start_pin": "PMOD1_0_LS", "stop_pin": "PMOD1_1_LS",
        }],
    }
    return cfg


def zcu216_v1() -> dict:
    """ZCU216 with tProc v1 (axis_tproc64x32_x8), PYNQ-configured readouts."""
    t_clk = _fs(_DAC_SLOW) / 16
    dacs = ["20", "21", "22", "23", "30", "31", "32"]
    gens = [_full_speed_gen(i, dac, _DAC_SLOW, i + 1, 65536) for i, dac in enumerate(dacs)]
    readouts = [_pynq_readout(i, adc, 14 + i) for i, adc in enumerate(["20", "22"])]
    cfg = {
        "board": "ZCU216", "sw_version": QICK_SW_VERSION,
        "extra_description": ["simulated board (qick-queue executor.simboard)"],
        "fw_timestamp": "simulated zcu216-v1",
        "rf": _rf({2: (_DAC_SLOW, [], 1), 3: (_DAC_SLOW, [], 1)}, [0, 2],
                  [[["axis_tproc64x32_x8_0", "clock"], ["dac", 2]], [["dac", 3]], [["adc", 2]]]),
        "refclk_freq": REFCLK,
        **_buffers([r["avgbuf_fullpath"] for r in readouts],
                   lambda n: {"trigger_type": "output", "trigger_port": 0,
                              "trigger_bit": 12 + n}),
        "gens": gens, "iqs": [], "time_taggers": [], "readouts": readouts,
        "tprocs": [{
            "type": "axis_tproc64x32_x8", "fullpath": "axis_tproc64x32_x8_0",
            "dmem_size": 4096, "pmem_size": 8192, "revision": 4, "version": "1.0",
            "clk_srcs": {"clock": {"source": ["dac", 2], "f_clk": t_clk, "src_range": None}},
            "f_time": t_clk, "output_pins": _pins("output"), "start_pin": "PMOD1_0_LS",
        }],
    }
    return cfg


BOARDS: dict[str, Callable[[], dict]] = {"zcu216-v2": zcu216_v2, "zcu216-v1": zcu216_v1}


def board_config(name: str) -> dict:
    """A fresh soccfg dict for a named board (see ``BOARDS``)."""
    try:
        return copy.deepcopy(BOARDS[name]())
    except KeyError:
        raise WorkloadError(f"unknown simulated board {name!r}: choose one of "
                            f"{', '.join(sorted(BOARDS))}, or give the soccfg JSON a real "
                            "board dumped", kind="invalid_config") from None


def load_soccfg_json(path: str | os.PathLike) -> dict:
    """Read a soccfg JSON a real board dumped (``soc.dump_cfg()``), checked for the keys
    qick needs to compile programs."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg: Any = json.load(f)
    except OSError as exc:
        raise WorkloadError(f"cannot read the board configuration {path}: {exc.strerror}",
                            kind="invalid_config") from None
    except ValueError as exc:
        raise WorkloadError(f"the board configuration {path} is not valid JSON ({exc}): "
                            "give the file a board wrote with soc.dump_cfg()",
                            kind="invalid_config") from None
    missing = [k for k in ("board", "gens", "readouts", "tprocs", "refclk_freq", "rf")
               if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise WorkloadError(f"the board configuration {path} lacks {', '.join(missing)}: "
                            "it is not a QICK soccfg (give the JSON of soc.dump_cfg())",
                            kind="invalid_config")
    return cfg
