"""Which firmware a program was compiled for: a stable fingerprint of a soccfg.

Only the sections that determine how a program compiles and where it lands enter the
fingerprint (generators, readouts, tProc, buffers, reference clock, board), as canonical
JSON (sorted keys, no spaces). Descriptive fields (software version, build text) do not,
so the same firmware reported by two qick versions keeps its fingerprint.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

FINGERPRINT_SECTIONS = ("board", "refclk_freq", "gens", "iqs", "readouts", "tprocs",
                        "time_taggers", "mr_buf", "ddr4_buf")


def _as_dict(soccfg: Any) -> Mapping:
    """Accept a dict or a QickConfig (whose dict is ``get_cfg()``)."""
    if hasattr(soccfg, "get_cfg"):
        return soccfg.get_cfg()
    return soccfg


def fingerprint(soccfg: Any) -> str:
    """``sha256:<16 hex>`` of the compilation-relevant part of a soccfg."""
    cfg = _as_dict(soccfg)
    part = {k: cfg.get(k) for k in FINGERPRINT_SECTIONS}
    text = json.dumps(part, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def tproc_version(soccfg: Any) -> int:
    """1 for ``axis_tproc64x32_x8``, 2 for ``qick_processor``, 0 when unknown."""
    cfg = _as_dict(soccfg)
    try:
        kind = cfg["tprocs"][0]["type"]
    except (KeyError, IndexError, TypeError):
        return 0
    return {"axis_tproc64x32_x8": 1, "qick_processor": 2}.get(kind, 0)


def describe(soccfg: Any) -> str:
    """A short human name: ``ZCU216 tProc v2 (built <date>, sha256:...)``."""
    return firmware_info(soccfg).name


def timing_clock(soccfg: Any) -> float | None:
    """The tProc timing clock in MHz (what a run-time estimate needs), None when unknown."""
    cfg = _as_dict(soccfg)
    try:
        value = float(cfg["tprocs"][0]["f_time"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return value if value > 0 else None


@dataclass(frozen=True)
class FirmwareInfo:
    """What a workload records about the firmware it was compiled for. Computing it hashes
    the soccfg, so a workload computes it once, not once per program."""
    fingerprint: str
    name: str
    f_time: float | None


def firmware_info(soccfg: Any) -> FirmwareInfo:
    """The ``FirmwareInfo`` of a soccfg (a dict or a QickConfig): one hash of the soccfg."""
    cfg = _as_dict(soccfg)
    mark = fingerprint(cfg)
    name = (f"{cfg.get('board', '?')} tProc v{tproc_version(cfg) or '?'} "
            f"(built {cfg.get('fw_timestamp', '?')}, {mark})")
    return FirmwareInfo(fingerprint=mark, name=name, f_time=timing_clock(cfg))


# -- a readable summary (the portal's device page) -----------------------------------------
@dataclass(frozen=True)
class ChannelSummary:
    """One generator or readout of a soccfg, as a person reads it: its channel number, IP
    type, sample rate and DDS range (MHz), the converter it drives or reads (``tile 2,
    block 0``) and, for a readout, its output (decimated) rate in MHz."""
    channel: int
    kind: str
    sample_rate: float | None
    dds_range: float | None
    converter: str
    output_rate: float | None = None


@dataclass(frozen=True)
class BoardSummary:
    """What a soccfg says about its board: the firmware (``firmware_info``), the tProc, the
    generators and the readouts."""
    firmware: FirmwareInfo
    board: str
    built: str
    qick_version: str
    tproc_version: int
    tproc_type: str
    tproc_revision: str
    generators: tuple[ChannelSummary, ...]
    readouts: tuple[ChannelSummary, ...]


def _text(value: Any, limit: int = 120) -> str:
    return "" if value is None or isinstance(value, (dict, list)) else str(value)[:limit]


def _mhz(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 < value < 1e7 else None


def _converter(value: Any) -> str:
    """qick names a converter by tile and block digits (``"20"``: tile 2, block 0)."""
    text = _text(value, 16)
    if len(text) == 2 and text.isdigit():
        return f"tile {text[0]}, block {text[1]}"
    return text


def _channels(items: Any, kind_key: str, converter_key: str,
              output: bool) -> tuple[ChannelSummary, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(ChannelSummary(channel=i, kind=_text(item.get(kind_key)),
                                sample_rate=_mhz(item.get("fs")),
                                dds_range=_mhz(item.get("f_dds")),
                                converter=_converter(item.get(converter_key)),
                                output_rate=_mhz(item.get("f_output")) if output else None)
                 for i, item in enumerate(items) if isinstance(item, Mapping))


def board_summary(soccfg: Any) -> BoardSummary:
    """The ``BoardSummary`` of a soccfg (a dict or a QickConfig). The soccfg is the board's
    word, read as hostile data: a missing or odd field is shown empty, never an error."""
    cfg = _as_dict(soccfg)
    tprocs = cfg.get("tprocs")
    tproc = tprocs[0] if isinstance(tprocs, list) and tprocs and \
        isinstance(tprocs[0], Mapping) else {}
    return BoardSummary(
        firmware=firmware_info(cfg), board=_text(cfg.get("board")),
        built=_text(cfg.get("fw_timestamp")), qick_version=_text(cfg.get("sw_version")),
        tproc_version=tproc_version(cfg), tproc_type=_text(tproc.get("type")),
        tproc_revision=_text(tproc.get("revision")),
        generators=_channels(cfg.get("gens"), "type", "dac", output=False),
        readouts=_channels(cfg.get("readouts"), "ro_type", "adc", output=True))
