"""The "resource calculator": how much board time a workload file will take, before it is
submitted.

Each program's time is its timeline advances × shots × rounds (``qickwork.estimate``); the
estimate needs the firmware's tProc timing clock, taken from (in this order) a soccfg the
caller gives (``--soccfg FILE``, or the one a device uploaded: ``--device ID``), or the
clock the workload recorded when it was compiled (``f_time`` in its ``qickwork`` metadata).
What the static reading cannot see (waits on register values, branches, calls) is listed
per program: the estimate is then a lower bound. The executor's own time around each
program (loading, configuring and starting it, writing its results) is added as a
measured overhead per program and per further round (``qickwork.estimate``'s
``PROGRAM_OVERHEAD_SECONDS`` and ``ROUND_OVERHEAD_SECONDS``, parameters here).

``WorkloadManager.estimate()`` uses the same per-program computation, so both agree.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from cloudqueue.errors import BadRequest


@dataclass
class ProgramEstimate:
    index: int
    acqtype: str
    shots: int                   # per round
    rounds: int
    shot_seconds: float          # one shot, one round
    seconds: float               # all shots, all rounds: the program's own timeline
    blind_spots: list[str] = field(default_factory=list)
    overhead_seconds: float = 0.0  # the executor's time around it (load, start, save)


@dataclass
class WorkloadEstimate:
    programs: list[ProgramEstimate]
    f_time: float                            # MHz used for the estimate
    source: str                              # where the timing clock came from
    workload_firmware: str | None = None     # what the programs were compiled for
    soccfg_firmware: str | None = None       # the soccfg given (None: the recorded clock)
    program_overhead: float = 0.0            # the constants used (seconds)
    round_overhead: float = 0.0

    @property
    def run_seconds(self) -> float:
        """The programs' own timelines."""
        return sum(p.seconds for p in self.programs)

    @property
    def overhead_seconds(self) -> float:
        """The executor's time around the programs."""
        return sum(p.overhead_seconds for p in self.programs)

    @property
    def seconds(self) -> float:
        return self.run_seconds + self.overhead_seconds

    @property
    def blind_spots(self) -> list[str]:
        return sorted({b for p in self.programs for b in p.blind_spots})

    @property
    def exact(self) -> bool:
        return not self.blind_spots

    @property
    def firmware_matches(self) -> bool | None:
        """False when the given soccfg is another firmware than the programs'; None: unknown."""
        if self.soccfg_firmware is None or self.workload_firmware is None:
            return None
        return self.soccfg_firmware == self.workload_firmware

    def to_json(self) -> dict[str, Any]:
        return {
            "Programs": [{"Index": p.index, "AcqType": p.acqtype, "Shots": p.shots,
                          "Rounds": p.rounds, "ShotSeconds": p.shot_seconds,
                          "Seconds": p.seconds, "OverheadSeconds": p.overhead_seconds,
                          "BlindSpots": p.blind_spots}
                         for p in self.programs],
            "TotalSeconds": self.seconds, "RunSeconds": self.run_seconds,
            "OverheadSeconds": self.overhead_seconds,
            "ProgramOverheadSeconds": self.program_overhead,
            "RoundOverheadSeconds": self.round_overhead,
            "Exact": self.exact, "BlindSpots": self.blind_spots,
            "TimingClockMHz": self.f_time, "Source": self.source,
            "WorkloadFirmware": self.workload_firmware,
            "SoccfgFirmware": self.soccfg_firmware, "FirmwareMatches": self.firmware_matches,
        }


def estimate_entries(entries: Iterable[Any], soccfg: Mapping | None = None, *,
                     source: str = "the given soccfg",
                     program_overhead: float | None = None,
                     round_overhead: float | None = None) -> WorkloadEstimate:
    """Estimate ``qickwork.ProgramEntry`` items with ``soccfg`` (a dict or QickConfig), or
    with the timing clock the entries recorded when ``soccfg`` is None. The overheads
    default to the measured ``qickwork.estimate`` constants."""
    from qickwork import estimate_dump, fingerprint
    from qickwork.estimate import (PROGRAM_OVERHEAD_SECONDS, ROUND_OVERHEAD_SECONDS,
                                   program_overhead as overhead)
    from qickwork.firmware import timing_clock

    entries = list(entries)
    firmwares = {e.firmware for e in entries if e.firmware}
    workload_firmware = firmwares.pop() if len(firmwares) == 1 else None
    soccfg_firmware = None
    if soccfg is not None:
        f_time = timing_clock(soccfg)
        if f_time is None:
            raise BadRequest(f"{source} has no tProc timing clock (tprocs[0].f_time): it is "
                             "not a QICK soccfg; give the JSON a board uploaded",
                             kind="invalid_config")
        soccfg_firmware = fingerprint(soccfg)
    else:
        clocks = {e.f_time for e in entries}
        if None in clocks or len(clocks) != 1:
            raise BadRequest(
                "this workload does not record its firmware's timing clock (written by the "
                "original client or an older version): give --device ID (its board's "
                "configuration is fetched) or --soccfg FILE", kind="no_configuration")
        f_time = clocks.pop()
        source = "the timing clock recorded in the workload"
    per_program = PROGRAM_OVERHEAD_SECONDS if program_overhead is None else program_overhead
    per_round = ROUND_OVERHEAD_SECONDS if round_overhead is None else round_overhead
    cfg = {"tprocs": [{"f_time": f_time}]}
    programs = []
    for i, entry in enumerate(entries):
        est = estimate_dump(entry.dump, cfg, rounds=entry.acquire.rounds)
        programs.append(ProgramEstimate(
            i, entry.acqtype, est.shots, est.rounds, est.shot_seconds, est.seconds,
            est.blind_spots, overhead(est.rounds, per_program=per_program,
                                      per_round=per_round)))
    return WorkloadEstimate(programs, f_time, source, workload_firmware, soccfg_firmware,
                            per_program, per_round)


def estimate_file(path: str | os.PathLike, soccfg: Mapping | None = None, *,
                  source: str = "the given soccfg") -> WorkloadEstimate:
    """Read a workload file (checked as any workload is) and estimate it; see the module
    docstring. Raises ``BadRequest`` (kind ``invalid_workload`` ...) for a bad file."""
    from userclient.precheck import read_entries

    return estimate_entries(read_entries(path), soccfg, source=source)


def format_seconds(seconds: float) -> str:
    """``1.234 s``, ``12.3 ms``, ``850 us``: three significant digits in a readable unit."""
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def estimate_text(name: str, est: WorkloadEstimate) -> str:
    """The table the CLI prints."""
    from userclient.display import table
    lines = [f"{name}: {len(est.programs)} program(s); timing clock {est.f_time:g} MHz "
             f"from {est.source}"]
    rows = [[str(p.index), p.acqtype, str(p.shots), str(p.rounds),
             format_seconds(p.shot_seconds), format_seconds(p.seconds),
             "; ".join(p.blind_spots) or "-"] for p in est.programs]
    lines.append(table(rows, ["PROGRAM", "TYPE", "SHOTS", "ROUNDS", "PER SHOT", "TOTAL",
                              "CANNOT SEE"]))
    total = format_seconds(est.seconds)
    parts = (f"{format_seconds(est.run_seconds)} in the programs' timelines + "
             f"{format_seconds(est.overhead_seconds)} executor overhead: "
             f"{format_seconds(est.program_overhead)} per program, "
             f"{format_seconds(est.round_overhead)} per further round, measured on the "
             "simulated board")
    if est.exact:
        lines.append(f"estimated board time: {total} ({parts})")
    else:
        lines.append(f"estimated board time: at least {total} ({parts}; the estimate "
                     f"cannot see: {', '.join(est.blind_spots)})")
    if est.firmware_matches is False:
        lines.append(f"warning: the programs were compiled for firmware "
                     f"{est.workload_firmware}, but {est.source} is {est.soccfg_firmware}: "
                     "this board would refuse the workload; compile against its soccfg")
    return "\n".join(lines)
