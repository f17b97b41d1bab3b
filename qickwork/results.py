"""The results file: HDF5, readable by the original SideQICK reader.

Layout (the original's, plus attributes)::

    /                     attrs: format, work_id, device, board ("qick" or "simulated":
                                 a simulated board's data is modelled), firmware, firmware_name,
                                 qick_version, status (RUNNING|DONE|FAILED|CANCELLED),
                                 error_kind, error_message, programs_total, programs_done,
                                 seconds, started_at, finished_at
    /data                 group, track_order=True
    /data/<i>             one group per program, "0", "1", ... (attrs: acqtype, seconds)
        avg               acquire() result, readouts stacked on the first axis:
                          (n_ro, n_reads, *loop_dims without the averaged axis, 2)
        raw               get_raw(), one row per shot and read, as the original device
                          client stored it: (n_ro, shots * n_reads, 2) int64, lzf;
                          attr qick_shape = get_raw()'s shape per readout
                          (*loop_dims, n_reads, 2)
        shots             get_shots(), likewise: (n_ro, shots * n_reads), lzf;
                          attr qick_shape = (*loop_dims, n_reads)
        dec               acquire_decimated() result, readouts stacked, float64

This is the layout the original SideQICK device client wrote and its readers (the demo
notebook's analysis: ``res["raw"][...]`` as (n_ro, shots, 2)) expect, so the files read the
original way; ``read_results`` reshapes ``raw`` and ``shots`` back to qick's own shapes
with ``qick_shape`` (a file without it, the original's, is read as it is).

When the readouts of one program give different shapes (different trigger counts), the
dataset becomes a group with one dataset per readout ("0", "1", ...), each with its own
``qick_shape``.

Written program by program (each group written and flushed, then the program's arrays are
dropped), so memory stays bounded by one program. A failure halfway still finishes the
file: the programs done so far, ``status`` FAILED and the error.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import IO, Any, Iterator, Sequence

import h5py
import numpy as np

from qickwork.errors import InvalidResults

RESULTS_FORMAT = 1
_LZF = ("raw", "shots")


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ResultsWriter:
    """Write a results file program by program. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, *, programs_total: int, work_id: str = "",
                 device: str = "", firmware: str = "", firmware_name: str = "",
                 qick_version: str = "", board: str = ""):
        self.path = os.fspath(path)
        self._file = h5py.File(self.path, "w", track_order=True)
        self._data = self._file.create_group("data", track_order=True)
        self.programs_done = 0
        attrs = self._file.attrs
        attrs.update({"format": RESULTS_FORMAT, "work_id": work_id, "device": device,
                      "board": board,
                      "firmware": firmware, "firmware_name": firmware_name,
                      "qick_version": qick_version, "status": "RUNNING", "error_kind": "",
                      "error_message": "", "programs_total": programs_total,
                      "programs_done": 0, "seconds": 0.0, "started_at": _utc(),
                      "finished_at": ""})
        self._file.flush()

    def add(self, index: int, *, acqtype: str, seconds: float,
            avg: Sequence[np.ndarray] | None = None, raw: Sequence[np.ndarray] | None = None,
            shots: Sequence[np.ndarray] | None = None,
            dec: Sequence[np.ndarray] | None = None, note: str = "") -> None:
        group = self._data.create_group(str(index))
        group.attrs["acqtype"] = acqtype
        group.attrs["seconds"] = float(seconds)
        if note:
            group.attrs["note"] = note
        for name, arrays in (("avg", avg), ("raw", raw), ("shots", shots), ("dec", dec)):
            if arrays is not None:
                self._write(group, name, [np.asarray(a) for a in arrays])
        self.programs_done += 1
        self._file.attrs["programs_done"] = self.programs_done
        self._file.flush()

    @staticmethod
    def _write(group: h5py.Group, name: str, arrays: list[np.ndarray]) -> None:
        opts = {"compression": "lzf"} if name in _LZF else {}
        shapes = [a.shape for a in arrays]
        if name in _LZF:  # one row per shot and read, as the original client stored them
            arrays = [a.reshape((-1, 2) if name == "raw" else (-1,)) for a in arrays]
        if len(set(shapes)) <= 1 and len({a.dtype for a in arrays}) <= 1:
            stacked = np.stack(arrays) if arrays else np.zeros((0,))
            if stacked.size == 0:
                opts = {}
            dataset = group.create_dataset(name, data=stacked, **opts)
            if name in _LZF and shapes:
                dataset.attrs["qick_shape"] = shapes[0]
        else:
            sub = group.create_group(name, track_order=True)
            for k, (a, shape) in enumerate(zip(arrays, shapes)):
                dataset = sub.create_dataset(str(k), data=a, **(opts if a.size else {}))
                if name in _LZF:
                    dataset.attrs["qick_shape"] = shape

    def finish(self, status: str, *, seconds: float, error_kind: str = "",
               error_message: str = "") -> None:
        attrs = self._file.attrs
        attrs.update({"status": status, "error_kind": error_kind or "",
                      "error_message": error_message or "", "seconds": float(seconds),
                      "finished_at": _utc()})
        self._file.flush()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class ProgramResult:
    """One program's results, as qick's own acquire()/get_raw()/get_shots() give them:
    lists with one array per readout."""
    index: int
    acqtype: str
    seconds: float
    avg: list[np.ndarray] | None = None
    raw: list[np.ndarray] | None = None
    shots: list[np.ndarray] | None = None
    dec: list[np.ndarray] | None = None
    attrs: dict = field(default_factory=dict)

    @property
    def data(self) -> list[np.ndarray] | None:
        """What acquire() (accumulated) or acquire_decimated() (decimated) returned."""
        return self.dec if self.acqtype == "decimated" else self.avg


@dataclass
class Results:
    attrs: dict
    programs: list[ProgramResult]

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", ""))

    def __iter__(self) -> Iterator[ProgramResult]:
        return iter(self.programs)

    def __len__(self) -> int:
        return len(self.programs)


def _qick_shaped(array: np.ndarray, dataset: Any) -> np.ndarray:
    shape = dataset.attrs.get("qick_shape")
    return array if shape is None else array.reshape(tuple(int(n) for n in shape))


def _read(node: Any) -> list[np.ndarray]:
    if isinstance(node, h5py.Group):
        return [_qick_shaped(node[k][()], node[k]) for k in sorted(node.keys(), key=int)]
    return [_qick_shaped(a, node) for a in node[()]]


def _source_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "filename", None) or getattr(source, "name", None)
               or "the results file")


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_results(source: str | os.PathLike | IO[bytes] | h5py.File) -> Results:
    """Read a results file (ours, or the original's: attributes are then empty): a path, an
    open binary file object, or an open ``h5py.File`` (left open)."""
    if isinstance(source, h5py.File):
        return _read_file(source, _source_name(source))
    with h5py.File(source, "r") as f:
        return _read_file(f, _source_name(source))


def _read_file(f: h5py.File, source: str) -> Results:
    attrs = {k: _plain(v) for k, v in f.attrs.items()}
    programs = []
    data = f.get("data")
    names = list(data.keys()) if data is not None else []
    strays = [n for n in names if not n.isdigit()]
    if strays:
        raise InvalidResults(f"{source} is not a results file: data/ holds {strays[0]!r}, "
                             f"not a program index; open the file the queue returned for "
                             f"this workload")
    names.sort(key=int)
    for name in names:
        g = data[name]
        acqtype = _plain(g.attrs.get("acqtype", "decimated" if "dec" in g else "accumulated"))
        programs.append(ProgramResult(
            index=int(name), acqtype=acqtype, seconds=float(g.attrs.get("seconds", 0.0)),
            avg=_read(g["avg"]) if "avg" in g else None,
            raw=_read(g["raw"]) if "raw" in g else None,
            shots=_read(g["shots"]) if "shots" in g else None,
            dec=_read(g["dec"]) if "dec" in g else None,
            attrs={k: _plain(v) for k, v in g.attrs.items()}))
    return Results(attrs=attrs, programs=programs)


def recorded_outcome(path: str | os.PathLike) -> dict:
    """What the board recorded of the run, from the file's attributes only (no arrays are
    read): ``{Status, ErrorKind, ErrorMessage, ProgramsDone, ProgramsTotal}``, None where the
    file has no such attribute (the original clients' files have none). Raises ``OSError``
    when the file cannot be opened as HDF5."""
    with h5py.File(path, "r") as f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
    names = {"Status": "status", "ErrorKind": "error_kind", "ErrorMessage": "error_message",
             "ProgramsDone": "programs_done", "ProgramsTotal": "programs_total"}
    return {key: (None if attrs.get(attr) in (None, "") else attrs[attr])
            for key, attr in names.items()}


def record_interruption(path: str | os.PathLike, status: str, error_kind: str,
                        error_message: str) -> bool:
    """Finish a results file whose run was cut short (still ``RUNNING``: its writer died)
    with ``status`` and the reason, keeping the programs it holds. Answers whether the file
    changed (a file that already records an outcome is left as it is). Raises ``OSError``
    when the file cannot be opened as HDF5 (e.g. cut in the middle of a write)."""
    with h5py.File(path, "r+") as f:
        if _plain(f.attrs.get("status", "RUNNING")) != "RUNNING":
            return False
        f.attrs.update({"status": status, "error_kind": error_kind,
                        "error_message": error_message, "finished_at": _utc()})
        f.flush()
    return True


def _datasets(node: Any, prefix: str = "") -> list[dict]:
    out = []
    for name in node.keys():
        item = node[name]
        if isinstance(item, h5py.Group):
            out.extend(_datasets(item, f"{prefix}{name}/"))
        else:
            out.append({"Name": prefix + name, "Shape": list(item.shape),
                        "DType": str(item.dtype)})
    return out


def summarize_results(path: str | os.PathLike) -> dict:
    """What a results file records, without reading its arrays: status, error, firmware,
    qick version, timings, and per program its datasets with shapes and dtypes. JSON-ready
    (``userclient show-results FILE --json`` prints it). Attributes a file does not have
    (the original clients' files have none) are None. Raises ``OSError`` when the file
    cannot be opened as HDF5."""
    with h5py.File(path, "r") as f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        data = f.get("data")
        names = [n for n in (data.keys() if isinstance(data, h5py.Group) else [])
                 if n.isdigit()]
        programs = []
        for name in sorted(names, key=int):
            group = data[name]
            if not isinstance(group, h5py.Group):
                continue
            g_attrs = {k: _plain(v) for k, v in group.attrs.items()}
            programs.append({
                "Index": int(name),
                "AcqType": g_attrs.get("acqtype",
                                       "decimated" if "dec" in group else "accumulated"),
                "Seconds": g_attrs.get("seconds"), "Note": g_attrs.get("note") or None,
                "Datasets": _datasets(group)})

    def get(key: str) -> Any:
        value = attrs.get(key)
        return None if value == "" else value

    return {"File": os.fspath(path), "Status": get("status"), "ErrorKind": get("error_kind"),
            "ErrorMessage": get("error_message"), "WorkId": get("work_id"),
            "Device": get("device"), "Board": get("board"), "Firmware": get("firmware"),
            "FirmwareName": get("firmware_name"), "QickVersion": get("qick_version"),
            "ProgramsDone": get("programs_done"), "ProgramsTotal": get("programs_total"),
            "Seconds": get("seconds"), "StartedAt": get("started_at"),
            "FinishedAt": get("finished_at"), "Programs": programs}
