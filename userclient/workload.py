"""``WorkloadManager``: build a workload from QICK programs, submit it, read its results.

Direct use, no subclassing::

    wm = WorkloadManager(soccfg)                   # the board's QickConfig (or its dict)
    wm.add(prog, acqtype="accumulated", rounds=10, save_raw=True, threshold=0.5, angle=0.1)
    wm.estimate()                                  # seconds on the board, and blind spots
    wm.write("sweep.json.gz")                      # or: work_id = wm.submit(client, device_id)
    for prog, result in wm.read_results("results.h5"):
        result.avg        # list per readout, shapes as prog.acquire() returns them
        result.raw, result.shots, result.dec       # get_raw(), get_shots(), acquire_decimated()

``read_results`` raises ``IncompleteResults`` when the file records a FAILED or CANCELLED
run; ``read_results(path, partial=True)`` gives the programs that completed.

The original SideQICK protocol keeps working: a subclass defines ``make_progs()`` (returning
programs, ``(prog, acqtype, save_raw, save_shots)`` tuples, or calling ``self.add``) and
optionally ``process_result(index, prog, result)``; then ``do_stuff("make_progs")``,
``do_stuff("write_progs", path)`` and ``do_stuff("read_results", path)`` build, write,
and read (matching results to programs by position).

tProc v1 and v2 programs are both accepted; each must be compiled against ``soccfg``.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Iterator

from qickwork import (AcquireArgs, Estimate, FirmwareMismatch, IncompleteResults,
                      InvalidWorkload, Limits,
                      ProgramEntry, ProgramResult, Results, check_entry, entry_for,
                      fingerprint, read_results, write_workload)
from qickwork.firmware import FirmwareInfo, firmware_info


class WorkloadManager:
    """Collects programs compiled for one board and turns them into a workload file."""

    def __init__(self, soccfg: Any = None, limits: Limits | None = None):
        self.soccfg = soccfg
        self.limits = limits or Limits()
        self.entries: list[ProgramEntry] = []
        self.progs: list[Any] = []
        # (soccfg object, its FirmwareInfo), and the last program soccfg seen with its
        # fingerprint: hashing a soccfg costs about as much as serializing a program, so
        # a sweep of many programs hashes each soccfg object once (the reference held here
        # keeps an id from being reused)
        self._firmware: tuple[Any, FirmwareInfo] | None = None
        self._prog_cfg: tuple[Any, str] | None = None

    def _firmware_info(self) -> FirmwareInfo:
        if self._firmware is None or self._firmware[0] is not self.soccfg:
            self._firmware = (self.soccfg, firmware_info(self.soccfg))
        return self._firmware[1]

    def _compiled_for(self, soccfg: Any) -> str:
        """The fingerprint of a program's soccfg (the manager's own: no hashing)."""
        if soccfg is self.soccfg:
            return self._firmware_info().fingerprint
        if self._prog_cfg is None or self._prog_cfg[0] is not soccfg:
            self._prog_cfg = (soccfg, fingerprint(soccfg))
        return self._prog_cfg[1]

    # ------------------------------------------------------------------ building
    def add(self, prog: Any, acqtype: str = "accumulated", *, rounds: int = 1,
            save_raw: bool = False, save_shots: bool = False,
            threshold: float | list[float] | None = None,
            angle: float | list[float] | None = None, remove_offset: bool = True) -> int:
        """Add a compiled program; return its index. Checked against the board now."""
        if self.soccfg is None:
            raise InvalidWorkload("WorkloadManager needs the board's soccfg: "
                                  "WorkloadManager(soccfg)")
        info = self._firmware_info()
        if getattr(prog, "soccfg", None) is not None and \
                self._compiled_for(prog.soccfg) != info.fingerprint:
            raise FirmwareMismatch(f"program {len(self.entries)} was compiled for another "
                                   "board configuration than this WorkloadManager's: compile "
                                   "it with the same soccfg")
        entry = entry_for(prog, self.soccfg, acqtype, rounds=rounds, save_raw=save_raw,
                          save_shots=save_shots, threshold=threshold, angle=angle,
                          remove_offset=remove_offset, firmware=info)
        check_entry(entry, len(self.entries), self.soccfg, self.limits)
        self.entries.append(entry)
        self.progs.append(prog)
        return len(self.entries) - 1

    def __len__(self) -> int:
        return len(self.entries)

    def estimate(self) -> Estimate:
        """Board time of the whole workload: the programs' static estimates plus the
        executor's measured overhead per program (``overhead_seconds``); the same
        computation as ``userclient estimate FILE`` (``userclient.estimate``)."""
        if not self.entries:
            return Estimate(seconds=0.0, shot_seconds=0.0, shots=0, rounds=0)
        from userclient.estimate import estimate_entries
        cfg = self.soccfg.get_cfg() if hasattr(self.soccfg, "get_cfg") else self.soccfg
        whole = estimate_entries(self.entries, cfg)
        parts = whole.programs
        return Estimate(seconds=whole.seconds,
                        shot_seconds=sum(p.shot_seconds for p in parts),
                        shots=sum(p.shots for p in parts), rounds=max(p.rounds for p in parts),
                        blind_spots=whole.blind_spots, overhead_seconds=whole.overhead_seconds)

    def write(self, path: str | os.PathLike) -> int:
        """Write the workload file; return its size in bytes."""
        if not self.entries:
            raise InvalidWorkload("the workload holds no programs: add at least one with "
                                  "WorkloadManager.add(prog)")
        return write_workload(path, self.entries)

    def submit(self, client: Any, device_id: str, priority: str = "MEDIUM", *,
               name: str | None = None) -> str:
        """Write to a temporary file and submit it with ``client.create_work``; the WorkId."""
        with tempfile.TemporaryDirectory(prefix="qick-workload-") as tmp:
            path = os.path.join(tmp, (name or "workload") + ".json.gz")
            self.write(path)
            return client.create_work(device_id, path, priority, name=name)

    # ------------------------------------------------------------------ results
    def read_results(self, path: str | os.PathLike, *,
                     partial: bool = False) -> Iterator[tuple[Any, ProgramResult]]:
        """Pairs (program, its result), by position.

        A file that records FAILED, CANCELLED or an unfinished run (RUNNING) raises
        ``IncompleteResults`` (with its status, the error and how many programs completed),
        so a script does not analyse half a sweep by accident; ``partial=True`` yields the
        programs that completed instead. ``results_info(path)`` tells the status and error.
        Files of the original clients record no status and are read as they are."""
        results = read_results(path)
        status = results.status
        if status and status != "DONE" and not partial:
            done = len(results)
            total = int(results.attrs.get("programs_total") or done)
            error = results.attrs.get("error_message") or ""
            kind = results.attrs.get("error_kind") or ""
            what = {"RUNNING": "an unfinished run (the board stopped while writing it)"
                    }.get(status, status)
            raise IncompleteResults(
                f"{os.fspath(path)} records {what} after {done} of {total} programs"
                + (f" ({kind}: {error})" if error else "")
                + f": its results are partial. Read the {done} programs that completed with "
                "read_results(path, partial=True), or fix the workload and submit it again",
                status=status, programs_done=done, programs_total=total)
        if len(results) > len(self.progs) and self.progs:
            raise InvalidWorkload(f"the results hold {len(results)} programs but this "
                                  f"WorkloadManager built {len(self.progs)}: read them with "
                                  "the manager that wrote the workload")
        return iter([(self.progs[r.index] if r.index < len(self.progs) else None, r)
                     for r in results])

    @staticmethod
    def results_info(path: str | os.PathLike) -> Results:
        return read_results(path)

    # ------------------------------------------------------------------ original protocol
    def make_progs(self) -> Any:
        """Override: return programs (or tuples ``(prog, acqtype, save_raw, save_shots)``),
        or call ``self.add`` and return None."""
        raise NotImplementedError("subclass WorkloadManager and define make_progs(), or "
                                  "use WorkloadManager(soccfg).add(prog)")

    def process_result(self, index: int, prog: Any, result: ProgramResult) -> None:
        """Override to analyse each program's result in ``do_stuff("read_results")``."""

    def do_stuff(self, action: str, path: str | os.PathLike | None = None, *,
                 partial: bool = False) -> Any:
        """``make_progs`` | ``write_progs`` (needs path) | ``read_results`` (needs path;
        ``partial`` as for ``read_results``)."""
        if action == "make_progs":
            self.entries, self.progs = [], []
            made = self.make_progs()
            for item in made or []:
                if isinstance(item, tuple):
                    prog, acqtype, *flags = item
                    self.add(prog, acqtype, save_raw=bool(flags[0]) if flags else False,
                             save_shots=bool(flags[1]) if len(flags) > 1 else False,
                             rounds=int(getattr(prog, "rounds", 1) or 1))
                else:
                    self.add(item, rounds=int(getattr(item, "rounds", 1) or 1))
            return self.progs
        if action in ("write_progs", "read_results") and path is None:
            raise InvalidWorkload(f"do_stuff({action!r}) needs a file path")
        if action == "write_progs":
            if not self.entries:
                self.do_stuff("make_progs")
            return self.write(path)
        if action == "read_results":
            if not self.progs:
                self.do_stuff("make_progs")
            pairs = list(self.read_results(path, partial=partial))
            for prog, result in pairs:
                self.process_result(result.index, prog, result)
            return pairs
        raise InvalidWorkload(f"unknown action {action!r}: use 'make_progs', 'write_progs' "
                              "or 'read_results'")


__all__ = ["WorkloadManager", "AcquireArgs", "IncompleteResults"]
