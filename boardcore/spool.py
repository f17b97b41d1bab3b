"""The durable spool: the board's state as folders, one directory per workload.

    incoming/<WorkId>/   the downloader is streaming it (owner: downloader)
    ready/<WorkId>/      downloaded and checked, waiting for the executor (owner: supervisor)
    running/<WorkId>/    handed to the executor (owner: supervisor)
    outgoing/<WorkId>/   finished (DONE / FAILED / CANCELLED), waiting for upload (owner: uploader)
    done/<WorkId>/       the service has the outcome; pruned by age and size

Each work directory holds ``meta.json`` (see ``WorkMeta``), ``workload.gz`` and, once run,
``results.h5``. A move between folders is one ``os.replace`` of the work directory followed
by an fsync of both parents (``qickbase.atomicfile.replace``), so a crash leaves each
workload in exactly one folder; the view is rebuilt from the folders alone
(``Spool.recover``). Files are written with ``qickbase.atomicfile.atomic_write`` (temporary
name ending ``.tmp``, fsync, rename, fsync the folder); recovery removes leftover temps.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from boardcore.errors import DiskFull, SpoolError
from qickbase.atomicfile import TMP_SUFFIX, atomic_write, fsync_dir, replace

STATES = ("incoming", "ready", "running", "outgoing", "done")
META = "meta.json"
WORKLOAD = "workload.gz"
RESULTS = "results.h5"
#: why work that was running when the daemon died ended (``Spool.recover``)
INTERRUPTED = "the board daemon restarted while this workload was running"


@dataclass
class WorkMeta:
    """What the board knows of one workload (``meta.json``)."""
    work_id: str
    received_at: float = 0.0                 # wall-clock seconds, for people and pruning
    size: int = 0                            # bytes of workload.gz
    attempts: int = 0                        # times handed to an executor on this board
    outcome: Optional[str] = None            # DONE | FAILED | CANCELLED once finished
    error_kind: Optional[str] = None
    error_message: Optional[str] = None
    programs_done: int = 0
    programs_total: int = 0
    seconds: float = 0.0                     # board time of the run
    has_results: bool = False                # results.h5 is there to upload
    upload_attempts: int = 0
    upload_error: Optional[str] = None
    cancel_requested: bool = False
    max_seconds: Optional[float] = None      # the service's MaxSeconds: the workload's cost cap
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "WorkMeta":
        names = set(cls.__dataclass_fields__)
        known = {k: v for k, v in data.items() if k in names}
        return cls(**known)

    def finish(self, outcome: str, kind: Optional[str] = None, message: Optional[str] = None,
               **more: Any) -> "WorkMeta":
        self.outcome, self.error_kind, self.error_message = outcome, kind, message
        for key, value in more.items():
            setattr(self, key, value)
        return self


class Spool:
    """The spool at ``root``. Every method is safe to call after a crash at any point."""

    def __init__(self, root: os.PathLike | str, min_free_bytes: int = 200 * 1024 * 1024):
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes

    # -- layout -----------------------------------------------------------------------------
    def ensure(self) -> "Spool":
        try:
            for state in STATES:
                (self.root / state).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool at {self.root}: {exc.strerror}; set "
                             "[supervisor] spool to a writable folder") from exc
        return self

    def path(self, state: str, work_id: str) -> Path:
        if state not in STATES:
            raise SpoolError(f"unknown spool folder {state!r}")
        if not work_id or "/" in work_id or work_id.startswith(".") or work_id.endswith(TMP_SUFFIX):
            raise SpoolError(f"refusing unsafe work id {work_id!r}")
        return self.root / state / work_id

    # -- reading ----------------------------------------------------------------------------
    def ids(self, state: str) -> List[str]:
        folder = self.root / state
        try:
            names = [n for n in os.listdir(folder) if not n.startswith(".")
                     and not n.endswith(TMP_SUFFIX) and (folder / n).is_dir()]
        except FileNotFoundError:
            return []
        return sorted(names, key=lambda n: (self._received(state, n), n))

    def _received(self, state: str, work_id: str) -> float:
        meta = self.read_meta(state, work_id)
        return meta.received_at if meta else 0.0

    def read_meta(self, state: str, work_id: str) -> Optional[WorkMeta]:
        try:
            data = json.loads((self.path(state, work_id) / META).read_text())
            return WorkMeta.from_json(data)
        except (OSError, ValueError, TypeError):
            return None

    def find(self, work_id: str) -> Optional[str]:
        """The folder holding ``work_id``, or None."""
        for state in STATES:
            if self.path(state, work_id).is_dir():
                return state
        return None

    def depths(self) -> Dict[str, int]:
        return {state: len(self.ids(state)) for state in STATES}

    # -- writing ----------------------------------------------------------------------------
    def write_meta(self, state: str, meta: WorkMeta) -> None:
        atomic_write(self.path(state, meta.work_id) / META,
                     json.dumps(asdict(meta), sort_keys=True).encode())

    def create_incoming(self, work_id: str) -> Path:
        """A fresh ``incoming/<work_id>/`` (a leftover partial one is replaced)."""
        self.check_room()
        target = self.path("incoming", work_id)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        fsync_dir(target.parent)
        return target

    def move(self, work_id: str, src: str, dst: str, meta: Optional[WorkMeta] = None) -> Path:
        """Move one workload between folders (a state transition), updating its meta first.

        A stale copy already in ``dst`` (e.g. the same WorkId handed out again after it
        reached ``done/``) is removed first.
        """
        source, target = self.path(src, work_id), self.path(dst, work_id)
        if not source.is_dir():
            raise SpoolError(f"workload {work_id} is not in {src}/")
        if meta is not None:
            self.write_meta(src, meta)
        if target.exists():
            shutil.rmtree(target)
        replace(source, target)
        return target

    def remove(self, state: str, work_id: str) -> None:
        target = self.path(state, work_id)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
            fsync_dir(target.parent)

    # -- disk -------------------------------------------------------------------------------
    def free_bytes(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def has_room(self) -> bool:
        return self.free_bytes() >= self.min_free_bytes

    def check_room(self) -> None:
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise DiskFull(f"only {free // 2**20} MiB free in {self.root} (need "
                           f"{self.min_free_bytes // 2**20} MiB, [supervisor] min_free_mb): no "
                           "new work is taken until space is freed; finished results are kept "
                           "and uploaded")

    def prune_done(self, max_age: float, max_bytes: int, now: Optional[float] = None) -> List[str]:
        """Delete ``done/`` entries older than ``max_age`` seconds, then the oldest until the
        folder is under ``max_bytes``. Returns the removed WorkIds."""
        now = time.time() if now is None else now
        entries = []
        for work_id in self.ids("done"):
            folder = self.path("done", work_id)
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
            try:
                finished = (folder / META).stat().st_mtime
            except OSError:
                finished = 0.0
            entries.append((finished, work_id, size))
        entries.sort()
        total = sum(e[2] for e in entries)
        removed = []
        for finished, work_id, size in entries:
            if now - finished > max_age or total > max_bytes:
                self.remove("done", work_id)
                total -= size
                removed.append(work_id)
        return removed

    # -- crash recovery ---------------------------------------------------------------------
    def recover(self, rerun_interrupted: bool = False, max_attempts: int = 2) -> Dict[str, List[str]]:
        """Rebuild a consistent view after a crash, from the folders alone.

        - temporary files and directories are removed;
        - ``incoming/``: partial downloads are dropped (the service hands the work out again);
        - ``running/``: interrupted work becomes FAILED (``board_restarted``) and goes to
          ``outgoing/`` (``supervisor.daemon.explain_interrupted`` then says how far it
          got); or, with ``rerun_interrupted``, back to ``ready/`` until it was tried
          ``max_attempts`` times.
        ``ready/`` and ``outgoing/`` are kept as they are (run, upload).
        """
        self.ensure()
        report: Dict[str, List[str]] = {"dropped": [], "failed": [], "rerun": []}
        for state in STATES:
            folder = self.root / state
            for name in os.listdir(folder):
                if name.endswith(TMP_SUFFIX):
                    stale = folder / name
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            for work_id in self.ids(state):
                for leftover in self.path(state, work_id).glob("*" + TMP_SUFFIX):
                    leftover.unlink()
        for work_id in self.ids("incoming"):
            self.remove("incoming", work_id)
            report["dropped"].append(work_id)
        for work_id in self.ids("running"):
            meta = self.read_meta("running", work_id) or WorkMeta(work_id)
            if rerun_interrupted and meta.attempts < max_attempts:
                self.move(work_id, "running", "ready", meta)
                report["rerun"].append(work_id)
            else:
                meta.finish("FAILED", "board_restarted", INTERRUPTED, has_results=False)
                self.move(work_id, "running", "outgoing", meta)
                report["failed"].append(work_id)
        return report
