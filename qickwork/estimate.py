"""A static run-time estimate of a program dump, before it runs.

qick has no whole-program duration estimator, so we read the low-level program: the time a
shot takes is the sum of its timeline advances (tProc v1 ``synci`` arguments, tProc v2
``TIME inc_ref`` literals), each counted as many times as the loops around it run, times
the number of rounds. This is exact for the common programs (``AveragerProgram``,
``AveragerProgramV2``) and blind to what happens at run time: waits on register values,
branches other than loop back-jumps, external triggers, calls. ``Estimate.blind_spots``
lists what it could not see, so a caller can say "at least".

What the executor spends around each program (loading, configuring, starting it, writing
its results) is not in a program's timeline: ``program_overhead`` models it with the two
measured constants below, which the workload estimate (``userclient.estimate``) adds.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

#: Board time per program outside its own timeline: the executor loads the dump into a
#: fresh program object and assembles it (about 60 %), configures the generators and
#: readouts, starts the tProc, stops and reads back the acquisition, and writes the
#: program's results (about 20 % each). Measured with ``bench/bench_workloads.py
#: --overhead-only`` on the simulated board (``executor.runner.run_workload``, 201
#: one-shot programs, best of 3, x86-64 PC, qick 0.2.436): 2.0 to 3.0 ms. A real board's
#: ARM cores are slower at the Python part: there it is a lower bound; the same script
#: with ``--kind qick`` measures it on the board.
PROGRAM_OVERHEAD_SECONDS = 0.0025
#: Each round after the first restarts the tProc and reads the buffers back again;
#: measured the same way (10 rounds against 1): 0.1 to 0.3 ms.
ROUND_OVERHEAD_SECONDS = 0.0002

_LIT = re.compile(r"^#(-?\d+)$")
_LOOP_TEST = re.compile(r"^(r\d+)\s*-\s*#(-?\d+)$")


@dataclass
class Estimate:
    seconds: float                       # for all rounds (with overhead_seconds, if any)
    shot_seconds: float                  # one shot (one innermost iteration), one round
    shots: int                           # per round: prod(loop_dims)
    rounds: int
    blind_spots: list[str] = field(default_factory=list)
    overhead_seconds: float = 0.0        # the executor's part (a workload's estimate only)

    @property
    def exact(self) -> bool:
        return not self.blind_spots


def _f_time(soccfg: Mapping) -> float:
    return float(soccfg["tprocs"][0]["f_time"])  # MHz: cycles per microsecond


def _v2_cycles(prog_list: list, blind: list[str]) -> float:
    """Cycles of the timeline advances, weighted by the loops that repeat them."""
    # back-jumps: REG_WR s15 label L ; TEST -op(rX - #N-1) ; JUMP -if(NZ)  => loop L runs N times
    loops = []  # (start P_ADDR, end P_ADDR, count)
    for idx, inst in enumerate(prog_list):
        if inst.get("LABEL") and inst.get("CMD") == "REG_WR" and inst.get("SRC") == "label":
            if idx + 2 < len(prog_list):
                test, jump = prog_list[idx + 1], prog_list[idx + 2]
                m = _LOOP_TEST.match(str(test.get("OP", "")).strip())
                if test.get("CMD") == "TEST" and jump.get("CMD") == "JUMP" and m:
                    loops.append((inst["LABEL"], jump.get("P_ADDR", idx + 2), int(m.group(2)) + 1))
    cycles = 0.0
    for idx, inst in enumerate(prog_list):
        cmd = inst.get("CMD")
        addr = inst.get("P_ADDR", idx)
        if cmd == "TIME" and inst.get("C_OP") == "inc_ref":
            m = _LIT.match(str(inst.get("LIT", "")))
            if not m:
                blind.append("a timeline advance by a register value")
                continue
            weight = 1
            for _label, end, count in loops:
                start = _label_start(prog_list, _label)
                if start is not None and start <= addr <= end:
                    weight *= count
            cycles += int(m.group(1)) * weight
        elif cmd == "JUMP" and inst.get("IF") and not inst.get("WR"):
            blind.append("a conditional branch")
        elif cmd in ("CALL", "RET"):
            blind.append("a subroutine call")
        elif cmd == "WAIT" and inst.get("C_OP") not in (None, "time"):
            blind.append("a wait on a flag or external input")
    return cycles


def _label_start(prog_list: list, label: str) -> int | None:
    """P_ADDR of the first instruction after the label (v2 labels are their own entries
    or the ``labels`` dict; loop labels point at the instruction following them)."""
    for idx, inst in enumerate(prog_list):
        if inst.get("LABEL") == label and inst.get("CMD") is None:
            return prog_list[idx + 1].get("P_ADDR", idx + 1) if idx + 1 < len(prog_list) else None
    return None


def _v2_cycles_with_labels(dump: Mapping, blind: list[str]) -> float:
    prog_list = list(dump.get("prog_list") or [])
    labels = dump.get("labels") or {}
    # express the labels dict (name -> "&addr") as label markers the scanner understands
    marked = []
    label_at: dict[int, list[str]] = {}
    for name, where in labels.items():
        try:
            label_at.setdefault(int(str(where).lstrip("&")), []).append(name)
        except ValueError:
            continue
    for idx, inst in enumerate(prog_list):
        for name in label_at.get(inst.get("P_ADDR", -1), []):
            marked.append({"LABEL": name, "P_ADDR": inst.get("P_ADDR")})
        marked.append(inst)
    return _v2_cycles(marked, blind)


def _v1_cycles(prog_list: list, blind: list[str]) -> float:
    label_idx = {inst["label"]: i for i, inst in enumerate(prog_list) if inst.get("label")}
    loops = []  # (start idx, end idx, count)
    last_regwi: dict[tuple, int] = {}
    for i, inst in enumerate(prog_list):
        name, args = inst.get("name"), inst.get("args") or []
        if name == "regwi" and len(args) >= 3:
            last_regwi[(args[0], args[1])] = args[2]
        if name == "loopnz" and len(args) >= 3 and args[2] in label_idx:
            count = last_regwi.get((args[0], args[1]))
            if isinstance(count, int):
                loops.append((label_idx[args[2]], i, count + 1))
            else:
                blind.append("a loop whose count is not a literal")
    cycles = 0.0
    for i, inst in enumerate(prog_list):
        name, args = inst.get("name"), inst.get("args") or []
        if name == "synci" and args:
            weight = math.prod(c for s, e, c in loops if s <= i <= e)
            cycles += float(args[0]) * weight
        elif name == "sync":
            blind.append("a timeline advance by a register value")
        elif name in ("condj", "call", "ret"):
            blind.append("a conditional branch" if name == "condj" else "a subroutine call")
        elif name in ("wait",):
            blind.append("a wait on a register value")
    return cycles


def program_overhead(rounds: int = 1, *, per_program: float = PROGRAM_OVERHEAD_SECONDS,
                     per_round: float = ROUND_OVERHEAD_SECONDS) -> float:
    """Seconds the executor spends on one program of ``rounds`` rounds beyond its timeline."""
    return per_program + per_round * max(rounds - 1, 0)


def estimate_dump(dump: Mapping[str, Any], soccfg: Mapping, rounds: int = 1) -> Estimate:
    """Estimate how long one program dump runs for ``rounds`` rounds."""
    blind: list[str] = []
    shots = math.prod(int(x) for x in (dump.get("loop_dims") or [1]))
    prog_list = list(dump.get("prog_list") or [])
    if "waves" in dump:
        cycles = _v2_cycles_with_labels(dump, blind)
    else:
        cycles = _v1_cycles(prog_list, blind)
    total_s = cycles / _f_time(soccfg) * 1e-6
    shot_s = total_s / shots if shots else 0.0
    return Estimate(seconds=total_s * rounds, shot_seconds=shot_s, shots=shots,
                    rounds=rounds, blind_spots=sorted(set(blind)))
