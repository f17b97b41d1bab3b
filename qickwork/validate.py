"""Checks of a workload against a board and against the board's limits, before anything runs.

``read_submitted`` and ``check_for_device`` are what a submit checks first (``userclient
submit`` and the web portal's upload alike): the file is a workload, and it fits the device
it is for.

Each check names the program and what to change. They catch on the PC (or before the board
is touched) what the hardware would otherwise refuse halfway through a workload: channels the
firmware does not have, envelopes over a generator's memory, decimated captures over the
readout's buffer, and shots or result sizes over the board's limits.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from qickwork.errors import InvalidWorkload, WorkloadError, WorkloadTooLarge
from qickwork.workload import ProgramEntry, check_firmware, read_workload

#: the first bytes of every HDF5 file (a results file, not a workload)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class WorkloadLimits:
    """What one workload's programs may ask of a board, checked before anything runs (on the
    user's PC and by the board's runner). Defaults suit a board with a few GB of RAM.
    Not the limits of a run on the board (``boardcore.limits.RunLimits``: its deadline and
    the board's configured sizes), from which the runner derives these."""
    max_workload_bytes: int = 512 * 1024 * 1024   # decompressed workload JSON
    max_programs: int = 100_000
    max_result_bytes: int = 2 * 1024 ** 3          # estimated size of all results
    max_program_result_bytes: int = 512 * 1024 ** 2  # one program's results (held in memory)
    max_shots: int = 10 ** 9                       # shots x rounds of one program
    max_rounds: int = 1_000_000


def _cfg(soccfg: Any) -> Mapping:
    return soccfg.get_cfg() if hasattr(soccfg, "get_cfg") else soccfg


def result_bytes(entry: ProgramEntry) -> int:
    """Estimated bytes of one program's results (float64/int64 as qick returns them)."""
    dims = [int(x) for x in entry.dump["loop_dims"]]
    total = math.prod(dims)
    avg_shape = math.prod(d for i, d in enumerate(dims) if i != entry.dump["avg_level"])
    size = 0
    for ro in entry.dump["ro_chs"].values():
        trigs = int(ro.get("trigs", 1))
        if entry.acqtype == "decimated":
            size += total * trigs * int(ro["length"]) * 2 * 8
        else:
            size += avg_shape * trigs * 2 * 8
            if entry.save_raw:
                size += total * trigs * 2 * 8
            if entry.save_shots:
                size += total * trigs * 8
    return size


def check_entry(entry: ProgramEntry, index: int, soccfg: Any, limits: WorkloadLimits) -> None:
    """Raise ``InvalidWorkload`` / ``WorkloadTooLarge`` when program ``index`` cannot run here."""
    cfg = _cfg(soccfg)
    gens, readouts = cfg.get("gens", []), cfg.get("readouts", [])
    dump = entry.dump
    for ch in dump["gen_chs"]:
        if int(ch) >= len(gens):
            raise InvalidWorkload(
                f"program {index} uses generator {ch}, but this board has {len(gens)} "
                f"generators (0..{len(gens) - 1}): compile it for this board", program=index)
    for ch in dump["ro_chs"]:
        if int(ch) >= len(readouts):
            raise InvalidWorkload(
                f"program {index} uses readout {ch}, but this board has {len(readouts)} "
                f"readouts (0..{len(readouts) - 1}): compile it for this board", program=index)
    envelopes = dump["envelopes"]
    if len(envelopes) > len(gens):
        raise InvalidWorkload(f"program {index} has envelopes for {len(envelopes)} generators, "
                              f"this board has {len(gens)}: compile it for this board",
                              program=index)
    for g, env in enumerate(envelopes):
        maxlen = gens[g].get("maxlen")
        for name, pulse in env["envs"].items():
            data = pulse["data"]  # an array in a live dump, [b64, shape, dtype] from a file
            if hasattr(data, "shape"):
                length = int(data.shape[0]) if data.ndim else 0
            else:
                length = int(data[1][0]) if data[1] else 0
            if maxlen is not None and pulse["addr"] + length > maxlen:
                raise WorkloadTooLarge(
                    f"program {index}: envelope {name!r} of generator {g} ends at sample "
                    f"{pulse['addr'] + length}, over the generator's memory of {maxlen} "
                    "samples: use shorter or fewer envelopes", program=index)
    rounds = entry.acquire.rounds
    if rounds > limits.max_rounds:
        raise WorkloadTooLarge(
            f"program {index} asks for {rounds} rounds, over the limit of "
            f"{limits.max_rounds}: use fewer rounds and more reps", program=index)
    shots = entry.shots
    if shots * rounds > limits.max_shots:
        raise WorkloadTooLarge(
            f"program {index} runs {shots} shots x {rounds} rounds, over the "
            f"board's limit of {limits.max_shots} shots: use fewer reps or rounds, "
            "or split the sweep over several programs", program=index)
    if entry.acqtype == "decimated":
        for ch, ro in dump["ro_chs"].items():
            need = int(ro["length"]) * int(ro.get("trigs", 1)) * shots
            maxlen = readouts[int(ch)]["buf_maxlen"]
            if need >= maxlen:
                raise WorkloadTooLarge(
                    f"program {index}: decimated readout {ch} needs {ro['length']} samples x "
                    f"{ro.get('trigs', 1)} triggers x {shots} shots = {need}, but the "
                    f"decimated buffer holds fewer than {maxlen}: shorten the readout or use "
                    "fewer reps", program=index)
    size = result_bytes(entry)
    if size > limits.max_program_result_bytes:
        raise WorkloadTooLarge(
            f"program {index} would produce about {size} bytes of results, over "
            f"the per-program limit of {limits.max_program_result_bytes}: do not "
            "save raw data or shots, or split the sweep", program=index)
    if entry.acquire.threshold is not None and isinstance(entry.acquire.threshold, list):
        if len(entry.acquire.threshold) != len(dump["ro_chs"]):
            raise InvalidWorkload(
                f"program {index}: {len(entry.acquire.threshold)} thresholds for "
                f"{len(dump['ro_chs'])} readouts: give one per readout, or one number",
                program=index)


def check_workload(entries: list[ProgramEntry], soccfg: Any, limits: WorkloadLimits) -> None:
    """Every per-program check, then the total result size."""
    total = 0
    for i, entry in enumerate(entries):
        check_entry(entry, i, soccfg, limits)
        total += result_bytes(entry)
    if total > limits.max_result_bytes:
        raise WorkloadTooLarge(
            f"the workload would produce about {total} bytes of results, over the "
            f"board's limit of {limits.max_result_bytes}: split it into smaller "
            "workloads or save less (no raw data, no shots)")


def read_submitted(path: str | os.PathLike, name: str) -> list[ProgramEntry]:
    """The programs of a file a user submits, read as the board reads them; a file that is
    not a workload (empty, an HDF5 results file, not gzip, bad JSON...) raises
    ``WorkloadError`` whose message starts with ``name`` (what the user calls the file)."""
    with open(path, "rb") as handle:
        head = handle.read(len(HDF5_SIGNATURE))
    if not head:
        raise InvalidWorkload(f"{name} is empty: it is not a workload (write one with "
                              "WorkloadManager.write())")
    if head == HDF5_SIGNATURE:
        raise InvalidWorkload(f"{name} is an HDF5 file (a results file?), not a workload: "
                              "submit the .json.gz file WorkloadManager.write() made")
    try:
        return read_workload(path)
    except WorkloadError as exc:
        raise type(exc)(f"{name}: {exc.message}", kind=exc.kind, program=exc.program) from None


def check_for_device(entries: list[ProgramEntry], soccfg: Any, name: str, device_id: str,
                     limits: WorkloadLimits | None = None) -> None:
    """What the board checks before it runs the programs of ``name`` on ``device_id``
    (whose uploaded configuration is ``soccfg``): compiled for its firmware, and within
    its limits (default ``WorkloadLimits``; a board may be configured stricter).
    ``WorkloadError`` (kinds ``firmware_mismatch``, ``too_large``...) says which."""
    try:
        check_firmware(entries, soccfg)
        check_workload(entries, soccfg, limits or WorkloadLimits())
    except WorkloadError as exc:
        raise type(exc)(f"{name} does not fit device {device_id}: {exc.message}",
                        kind=exc.kind, program=exc.program) from None
