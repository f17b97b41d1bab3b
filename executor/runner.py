"""Run a workload file on a board and write its results file. Never raises for bad input.

Interface used by the board daemon's executor process:

    board = open_board(kind="simulated", board="zcu216-v2", soccfg_json=None, seed=None,
                       time_scale=0.0, resonator=None)
        kind "qick": the real ``qick.QickSoc`` (imported only then; needs the RFSoC);
        kind "simulated": ``executor.simboard.SimulatedSoc`` for a named board
        (``executor.boards.BOARDS``) or for the soccfg JSON a real board dumped.
        Board: .soc, .soccfg (a QickConfig), .config_dict (JSON-able soccfg, what the
        board uploads as its device configuration), .fingerprint, .name, .kind

    outcome = run_workload(workload_path, results_path, board, limits=None,
                           progress=lambda done, total: None, should_stop=lambda: False,
                           work_id="", device="", terminations=lambda: 0,
                           clock=time.monotonic)
        -> RunOutcome(status "DONE"|"FAILED"|"CANCELLED", error_kind, error_message,
                      programs_done, programs_total, seconds)
        limits: the run's ``boardcore.limits.RunLimits`` (None: qickwork's default
        ``WorkloadLimits`` and no deadline).

Stopping early, always between programs or rounds, the file closed cleanly with the programs
done so far and the outcome (one path, ``outcome`` below):
- ``should_stop()`` true (a cancel): at the next round boundary -> CANCELLED;
- the deadline (``limits.run_deadline`` after the run started, by ``clock``: the board's
  ``deadline_seconds``, or the workload's ``max_seconds`` when shorter) passed: before the
  next program -> FAILED, kind ``deadline`` (the message names MaxSeconds when it was that);
- ``terminations()`` (SIGTERMs the executor received) 1: before the next program, 2 or more:
  at the next round boundary -> FAILED, kind ``stopped``.
The last program's end is not a stop: a workload whose programs all ran is DONE.

Steps: read the workload (size-capped, checked as hostile data), refuse another firmware,
validate every program against the board and the limits, then run each program with qick's
own code path (a fresh program object per dump, ``acquire`` / ``acquire_decimated`` with the
recorded acquire arguments, stepping round by round so ``should_stop`` is honoured between
rounds), writing each program's results as it finishes. A failure writes a valid results
file with the programs done so far and the error, when the failure happened after the
first program started; a workload refused before running gets no results file unless
``results_path`` is wanted anyway (it always is: the file then holds only the error).
Error kinds: invalid_workload, firmware_mismatch, too_large (also a program that runs out
of the process's memory), device_error, deadline, stopped.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from executor.boards import board_config, load_soccfg_json
from executor.openfail import explain_open_failure
from executor.simboard import Resonator, SimulatedSoc
from qickwork.errors import DeviceError, WorkloadError
from qickwork.firmware import describe, fingerprint
from qickwork.results import ResultsWriter
from boardcore.limits import RunLimits
from qickwork.validate import WorkloadLimits, check_workload
from qickwork.workload import check_firmware, make_program, qick_version, read_workload

__all__ = ["Board", "RunOutcome", "open_board", "run_workload"]

log = logging.getLogger(__name__)


@dataclass
class Board:
    soc: Any
    soccfg: Any
    config_dict: dict
    fingerprint: str
    name: str
    kind: str


@dataclass
class RunOutcome:
    status: str                    # DONE | FAILED | CANCELLED
    error_kind: str | None
    error_message: str | None
    programs_done: int
    programs_total: int
    seconds: float


def open_board(kind: str = "simulated", board: str = "zcu216-v2",
               soccfg_json: str | None = None, seed: int | None = None,
               time_scale: float = 0.0, resonator: Resonator | None = None) -> Board:
    """Open the real board (``kind="qick"``) or a simulated one. Raises ``WorkloadError``
    (kind ``invalid_config``/``device_error``) with an actionable message."""
    if kind == "qick":
        try:
            from qick import QickSoc  # only exists on the board (pynq)
            soc = QickSoc()
        except Exception as exc:  # pynq/firmware failures come in many types
            # what PYNQ said, and which part of the installation to look at
            raise DeviceError(explain_open_failure(exc, os.environ)) from None
        cfg = soc.get_cfg()
        return Board(soc=soc, soccfg=soc, config_dict=cfg, fingerprint=fingerprint(cfg),
                     name=f"{cfg.get('board', 'qick')}", kind="qick")
    if kind != "simulated":
        raise WorkloadError(f"unknown board kind {kind!r}: use 'qick' or 'simulated'",
                            kind="invalid_config")
    cfg = load_soccfg_json(soccfg_json) if soccfg_json else board_config(board)
    soc = SimulatedSoc(cfg, seed=seed, time_scale=time_scale, resonator=resonator)
    name = f"simulated {board}" if not soccfg_json else f"simulated {cfg.get('board')}"
    return Board(soc=soc, soccfg=soc, config_dict=soc.get_cfg(),
                 fingerprint=fingerprint(cfg), name=name, kind="simulated")


def _run_one(prog: Any, entry: Any, soc: Any, should_stop: Callable[[], bool]) -> dict | None:
    """Run one program round by round; None when stopped."""
    a = entry.acquire
    if entry.acqtype == "decimated":
        prog.acquire_decimated(soc, rounds=a.rounds, progress=False,
                               remove_offset=a.remove_offset, step_rounds=True)
    else:
        prog.acquire(soc, rounds=a.rounds, threshold=a.threshold, angle=a.angle,
                     progress=False, remove_offset=a.remove_offset, step_rounds=True)
    while prog.finish_round():
        if should_stop():
            return None
        prog.prepare_round()
    data = prog.finish_acquire()
    if entry.acqtype == "decimated":
        return {"dec": data}
    out: dict = {"avg": data}
    if entry.save_raw:
        out["raw"] = prog.get_raw()
    if entry.save_shots:
        shots = prog.get_shots()
        if shots is not None:
            out["shots"] = shots
        else:
            out["note"] = "shots not saved: the program was given no threshold"
    return out


def run_workload(workload_path: str, results_path: str, board: Board,
                 limits: RunLimits | None = None,
                 progress: Callable[[int, int], None] = lambda done, total: None,
                 should_stop: Callable[[], bool] = lambda: False,
                 work_id: str = "", device: str = "",
                 terminations: Callable[[], int] = lambda: 0,
                 clock: Callable[[], float] = time.monotonic) -> RunOutcome:
    """Run a workload on ``board`` and write ``results_path``; see the module docstring."""
    checks, deadline = _workload_limits(limits), limits.run_deadline if limits else None
    started = clock()
    entries: list = []
    writer: ResultsWriter | None = None
    done = 0

    def outcome(status: str, kind: str | None = None, message: str | None = None) -> RunOutcome:
        seconds = clock() - started
        if writer is not None:
            try:
                writer.finish(status, seconds=seconds, error_kind=kind or "",
                              error_message=message or "")
            finally:
                writer.close()
        return RunOutcome(status, kind, message, done, len(entries), seconds)

    def stopped() -> RunOutcome | None:
        """The outcome when the run must stop before its next program, else None."""
        n = len(entries)
        if should_stop():
            return outcome("CANCELLED", None, f"cancelled after {done} of {n} programs")
        if deadline is not None and clock() - started >= deadline:
            if limits is not None and limits.capped:
                return outcome("FAILED", "deadline",
                               f"stopped at its MaxSeconds of {deadline:g} s (its cost cap) "
                               f"after {done} of {n} programs (their results are kept); submit "
                               "it with a larger --max-seconds or split the workload")
            return outcome("FAILED", "deadline",
                           f"stopped at its deadline of {deadline:g} s after {done} of {n} "
                           "programs (their results are kept); ask the board's admin for a "
                           "longer deadline ([executor] deadline_seconds) or split the workload")
        if terminations():
            return outcome("FAILED", "stopped",
                           f"the board stopped the run (SIGTERM) after {done} of {n} programs "
                           "(their results are kept); submit the rest again")
        return None

    def stop_now() -> bool:
        return should_stop() or terminations() >= 2

    try:
        entries = read_workload(workload_path, max_bytes=checks.max_workload_bytes,
                                max_programs=checks.max_programs)
        check_firmware(entries, board.config_dict)
        check_workload(entries, board.config_dict, checks)
    except WorkloadError as exc:
        writer = _open_writer(results_path, len(entries), board, work_id, device)
        return outcome("FAILED", exc.kind, exc.message)

    writer = _open_writer(results_path, len(entries), board, work_id, device)
    if writer is None:
        return outcome("FAILED", "device_error",
                       f"cannot write the results file {results_path}: check the spool disk")
    progress(0, len(entries))
    for i, entry in enumerate(entries):
        early = stopped()
        if early is not None:
            return early
        t0 = clock()
        try:
            prog = make_program(entry, board.soccfg, i)
            if hasattr(board.soc, "attach_program"):
                board.soc.attach_program(prog)
            result = _run_one(prog, entry, board.soc, stop_now)
        except WorkloadError as exc:
            return outcome("FAILED", exc.kind, exc.message)
        except MemoryError as exc:  # over the process's memory limit (the program's arrays)
            return outcome("FAILED", "too_large",
                           f"program {i} ran out of memory on {board.name} "
                           f"({exc or 'MemoryError'}); the {done} programs before it "
                           "completed. Make its results smaller: do not save raw data or "
                           "shots, use fewer reps or loop steps, or split it into several "
                           "programs")
        except Exception as exc:  # whatever qick or the board raise while running
            log.warning("program %d failed: %s: %s", i, type(exc).__name__, exc)
            return outcome("FAILED", "device_error",
                           f"program {i} failed while running on {board.name}: "
                           f"{type(exc).__name__}: {exc}. The {done} programs before it "
                           "completed; check this program's readout lengths, loop counts "
                           "and buffer sizes against the board")
        if result is None and should_stop():
            return outcome("CANCELLED", None,
                           f"cancelled during program {i}; {done} of {len(entries)} completed")
        if result is None:
            return outcome("FAILED", "stopped",
                           f"the board stopped the run (a second SIGTERM) during program {i}; "
                           f"{done} of {len(entries)} completed (their results are kept); "
                           "submit the rest again")
        note = result.pop("note", "")
        try:
            writer.add(i, acqtype=entry.acqtype, seconds=clock() - t0, note=note, **result)
        except (OSError, ValueError) as exc:
            return outcome("FAILED", "device_error",
                           f"writing the results of program {i} failed: {exc}")
        done += 1
        progress(done, len(entries))
    return outcome("DONE")


def _workload_limits(limits: RunLimits | None) -> WorkloadLimits:
    """What the workload's programs are checked against: the board's configured sizes,
    qickwork's defaults for the rest."""
    if limits is None:
        return WorkloadLimits()
    return WorkloadLimits(max_workload_bytes=limits.max_workload_bytes,
                          max_result_bytes=limits.max_result_bytes)


def _open_writer(path: str, total: int, board: Board, work_id: str,
                 device: str) -> ResultsWriter | None:
    try:
        return ResultsWriter(path, programs_total=total, work_id=work_id,
                             device=device or board.name, firmware=board.fingerprint,
                             firmware_name=describe(board.config_dict),
                             qick_version=qick_version(), board=board.kind)
    except OSError:
        return None
