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
