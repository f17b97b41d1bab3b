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

The original SideQICK protocol works unchanged: a subclass sets its attributes, then calls
``super().__init__(soccfg)``, which calls ``do_stuff(make_progs=True)``; ``do_stuff`` is
called once per phase with a boolean flag::

    class Sweep(WorkloadManager):
        def do_stuff(self, make_progs=False, write_progs=False, read_results=False):
            for f in self.freqs:
                if make_progs:
                    prog = MyProgram(self.soccfg, {...})
                    self.add_program(prog)
                else:
                    prog = next(self.prog_iterator)
                if write_progs:
                    self.add_acquire(prog, save_raw=True)    # or self.add_decimated(prog)
                if read_results:
                    res = next(self.result_iterator)          # an h5py group
                    avg = res["avg"][...]

    with expt.write_progs() as f:                  # an open temporary file (or a path)
        work_id = client.create_work(f)
    with client.get_results(work_id) as f:
        expt.read_results(f)                       # calls do_stuff(read_results=True)

``add_acquire`` and ``add_decimated`` go through ``add`` (the same checks against the
board, the same firmware fingerprint and acquire arguments in the file, ``rounds`` from the
program's own ``rounds``/``soft_avgs``), so both ways write the same file.

tProc v1 and v2 programs are both accepted; each must be compiled against ``soccfg``.
"""
from __future__ import annotations

import os
import tempfile
from typing import IO, Any, Iterator

from qickwork import (AcquireArgs, Estimate, FirmwareMismatch, IncompleteResults,
                      InvalidWorkload, ProgramEntry, ProgramResult, Results,
                      WorkloadLimits, check_entry, dumps_workload, entry_for,
                      fingerprint, read_results, write_workload)
from qickwork.firmware import FirmwareInfo, firmware_info


class WorkloadManager:
    """Collects programs compiled for one board and turns them into a workload file."""

    def __init__(self, soccfg: Any = None, *, limits: WorkloadLimits | None = None):
        self.soccfg = soccfg
        self.limits = limits or WorkloadLimits()
        # the original protocol's lists: programs made (add_program), and the dicts that
        # go into the file (add_acquire / add_decimated / add)
        self.proglist: list[Any] = []
        self.progdicts: list[dict] = []
        # ours: what add() checked and built, and the programs in that order
        self.entries: list[ProgramEntry] = []
        self.progs: list[Any] = []
        self.prog_iterator: Iterator[Any] = iter(())
        self.result_iterator: Iterator[Any] = iter(())
        # (soccfg object, its FirmwareInfo), and the last program soccfg seen with its
        # fingerprint: hashing a soccfg costs about as much as serializing a program, so
        # a sweep of many programs hashes each soccfg object once (the reference held here
        # keeps an id from being reused)
        self._firmware: tuple[Any, FirmwareInfo] | None = None
        self._prog_cfg: tuple[Any, str] | None = None
        self.do_stuff(make_progs=True)

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

    # ------------------------------------------------------------------ original protocol
    def do_stuff(self, make_progs: bool = False, write_progs: bool = False,
                 read_results: bool = False) -> None:
        """Override: make the programs (``add_program``), say how to run each
        (``add_acquire``/``add_decimated``), read each result (``next(self.result_iterator)``);
        see the module docstring. The base class has no programs of its own."""

    def add_program(self, prog: Any) -> None:
        """Add a program to the list (in ``do_stuff`` when ``make_progs``)."""
        self.proglist.append(prog)

    def add_acquire(self, prog: Any, save_raw: bool = False, save_shots: bool = False) -> None:
        """Run ``prog`` with ``acquire()`` (in ``do_stuff`` when ``write_progs``)."""
        self.add(prog, "accumulated", rounds=_rounds(prog), save_raw=save_raw,
                 save_shots=save_shots)

    def add_decimated(self, prog: Any) -> None:
        """Run ``prog`` with ``acquire_decimated()`` (in ``do_stuff`` when ``write_progs``)."""
        self.add(prog, "decimated", rounds=_rounds(prog))

    def write_progs(self, filepath: str | os.PathLike | None = None) -> IO[bytes] | None:
        """Call ``do_stuff(write_progs=True)`` over the programs made, and write the workload:
        to ``filepath`` (None is returned), or, without one, to an open temporary file
        (at its start; deleted when closed) that is returned."""
        self.entries, self.progs, self.progdicts = [], [], []  # writing twice: no duplicates
        self.prog_iterator = iter(self.proglist)
        self.do_stuff(write_progs=True)
        if filepath is not None:
            self.write(filepath)
            return None
        data = self._dumps()
        handle = tempfile.TemporaryFile()
        handle.write(data)
        handle.seek(0)
        return handle

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
        self.progdicts.append(entry.to_file_dict())
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

    def _dumps(self) -> bytes:
        if not self.entries:
            raise InvalidWorkload("the workload holds no programs: add at least one with "
                                  "WorkloadManager.add(prog) (or add_acquire/add_decimated "
                                  "in do_stuff when write_progs is set)")
        return dumps_workload(self.entries)

    def write(self, path: str | os.PathLike) -> int:
        """Write the workload file; return its size in bytes."""
        self._dumps()  # the same check, before any file is touched
        return write_workload(path, self.entries)

    def submit(self, client: Any, device_id: str | None = None, priority: str = "MEDIUM", *,
               name: str | None = None) -> str:
        """Submit the programs added with ``client.create_work``; the WorkId."""
        with tempfile.TemporaryFile() as handle:
            handle.write(self._dumps())
            handle.seek(0)
            return client.create_work(handle, device_id, priority, name=name)

    # ------------------------------------------------------------------ results
    def read_results(self, resultsfile: str | os.PathLike | IO[bytes], *,
                     partial: bool = False) -> Iterator[tuple[Any, ProgramResult]]:
        """Read a results file (a path or an open binary file); return an iterator of pairs
        (program, its result), by position.

        As the original does, it also sets ``self.prog_iterator`` (over the programs made)
        and ``self.result_iterator`` (the h5py groups under ``data``, in creation order) and
        calls ``do_stuff(read_results=True)`` while the file is open.

        A file that records FAILED, CANCELLED or an unfinished run (RUNNING) raises
        ``IncompleteResults`` (with its status, the error and how many programs completed),
        so a script does not analyse half a sweep by accident; ``partial=True`` reads the
        programs that completed instead. ``results_info(path)`` tells the status and error.
        Files of the original clients record no status and are read as they are."""
        import h5py
        name = (os.fspath(resultsfile) if isinstance(resultsfile, (str, os.PathLike))
                else getattr(resultsfile, "name", None))
        name = name if isinstance(name, str) else "the results file"
        with h5py.File(resultsfile, "r") as f:
            results = read_results(f)
            self._check_complete(results, name, partial)
            progs = self.progs or self.proglist
            if len(results) > len(progs) and progs:
                raise InvalidWorkload(f"the results hold {len(results)} programs but this "
                                      f"WorkloadManager built {len(progs)}: read them with "
                                      "the manager that wrote the workload")
            data = f.get("data")
            self.prog_iterator = iter(self.proglist)
            self.result_iterator = iter(list(data.values()) if data is not None else [])
            self.do_stuff(read_results=True)
        return iter([(progs[r.index] if r.index < len(progs) else None, r)
                     for r in results])

    @staticmethod
    def _check_complete(results: Results, name: str, partial: bool) -> None:
        status = results.status
        if not status or status == "DONE" or partial:
            return
        done = len(results)
        total = int(results.attrs.get("programs_total") or done)
        error = results.attrs.get("error_message") or ""
        kind = results.attrs.get("error_kind") or ""
        what = {"RUNNING": "an unfinished run (the board stopped while writing it)"
                }.get(status, status)
        raise IncompleteResults(
            f"{name} records {what} after {done} of {total} programs"
            + (f" ({kind}: {error})" if error else "")
            + f": its results are partial. Read the {done} programs that completed with "
            "read_results(path, partial=True), or fix the workload and submit it again",
            status=status, programs_done=done, programs_total=total)

    @staticmethod
    def results_info(path: str | os.PathLike) -> Results:
        return read_results(path)


def _rounds(prog: Any) -> int:
    """The rounds a program asks for (tProc v1 ``rounds``/``soft_avgs`` in its cfg)."""
    rounds = getattr(prog, "rounds", 1)
    return rounds if isinstance(rounds, int) and rounds >= 1 else 1


__all__ = ["WorkloadManager", "AcquireArgs", "IncompleteResults"]
