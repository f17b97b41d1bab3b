"""The workload file: a batch of compiled QICK programs, as data.

On disk a workload is what the original SideQICK clients write and read: gzip of the JSON
``qick.helpers.progs2json`` makes of a list of program dumps (``prog.dump_prog()``), each
dump with the extra keys ``acqtype`` (``"accumulated"`` or ``"decimated"``), ``save_raw``
and ``save_shots``. We add one more key per dump, ``"qickwork"``, that old readers ignore::

    "qickwork": {"format": 1, "qick_version": "0.2.436",
                 "firmware": "sha256:...", "firmware_name": "ZCU216 tProc v2 (...)",
                 "f_time": 430.08,
                 "acquire": {"rounds": 1, "threshold": null, "angle": null,
                             "remove_offset": true}}

``f_time`` (MHz) is the timing clock of that firmware's tProc, so a run-time estimate can
be made from the file alone. ``firmware`` is ``qickwork.firmware.fingerprint`` of the soccfg the program was compiled
for: a dump compiled for another board of the same tProc version would load silently with
the wrong channel mapping, so the executor refuses it by name.

Reading treats the file as hostile: decompression is streamed with a cap (a gzip bomb stops
at the cap), JSON is parsed with the standard parser (never pickle, eval or exec), every
array is checked (numeric dtype, shape matching its bytes) before qick decodes it, and each
program is rebuilt on a fresh program object (a reused tProc v1 object keeps its first
binary: qick's stale-binary pitfall).
"""
from __future__ import annotations

import base64
import copy
import gzip
import json
import math
import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Mapping

import numpy as np

from qickbase.atomicfile import atomic_write
from qickwork.errors import FirmwareMismatch, InvalidWorkload, WorkloadTooLarge
from qickwork.firmware import (FirmwareInfo, describe, firmware_info, fingerprint,
                               tproc_version)

FORMAT_VERSION = 1
META_KEY = "qickwork"
ACQTYPES = ("accumulated", "decimated")
DEFAULT_MAX_BYTES = 512 * 1024 * 1024       # decompressed JSON
_V1_KEYS = ("envelopes", "ro_chs", "gen_chs", "prog_list", "counter_addr", "loop_dims",
            "avg_level")
_V2_KEYS = _V1_KEYS + ("waves", "labels")


def qick_version() -> str:
    import qick
    return getattr(qick, "__version__", "unknown")


@dataclass
class AcquireArgs:
    """The arguments of ``acquire()`` / ``acquire_decimated()`` that a dump does not carry."""
    rounds: int = 1
    threshold: float | list[float] | None = None
    angle: float | list[float] | None = None
    remove_offset: bool = True

    def to_json(self) -> dict:
        return {"rounds": self.rounds, "threshold": self.threshold, "angle": self.angle,
                "remove_offset": self.remove_offset}

    @classmethod
    def from_json(cls, data: Any, index: int) -> "AcquireArgs":
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidWorkload(f"program {index}: 'acquire' must be an object",
                                  program=index)
        rounds = data.get("rounds", 1)
        if not _is_int(rounds) or rounds < 1:
            raise InvalidWorkload(f"program {index}: rounds must be a positive integer, "
                                  f"not {rounds!r}", program=index)
        for name in ("threshold", "angle"):
            value = data.get(name)
            ok = value is None or _is_number(value) or (
                isinstance(value, list) and all(_is_number(v) for v in value))
            if not ok:
                raise InvalidWorkload(f"program {index}: {name} must be a number or a list "
                                      f"of numbers, not {value!r}", program=index)
        return cls(rounds=int(rounds), threshold=data.get("threshold"),
                   angle=data.get("angle"), remove_offset=bool(data.get("remove_offset", True)))


@dataclass
class ProgramEntry:
    """One program of a workload: its dump, how to acquire it, and what it was built for."""
    dump: dict
    acqtype: str = "accumulated"
    save_raw: bool = False
    save_shots: bool = False
    acquire: AcquireArgs = field(default_factory=AcquireArgs)
    firmware: str | None = None          # fingerprint; None in original-format workloads
    firmware_name: str | None = None
    f_time: float | None = None          # MHz, the tProc timing clock of that firmware
    qick_version: str | None = None
    format_version: int | None = None    # None: original SideQICK format

    @property
    def tproc_version(self) -> int:
        return 2 if "waves" in self.dump else 1

    @property
    def shots(self) -> int:
        return math.prod(int(x) for x in self.dump["loop_dims"])

    def to_file_dict(self) -> dict:
        out = dict(self.dump)
        out.update({"acqtype": self.acqtype, "save_raw": bool(self.save_raw),
                    "save_shots": bool(self.save_shots)})
        out[META_KEY] = {"format": FORMAT_VERSION,
                         "qick_version": self.qick_version or qick_version(),
                         "firmware": self.firmware, "firmware_name": self.firmware_name,
                         "f_time": self.f_time,
                         "acquire": self.acquire.to_json()}
        return out


def entry_for(prog: Any, soccfg: Any, acqtype: str = "accumulated", *, rounds: int = 1,
              save_raw: bool = False, save_shots: bool = False,
              threshold: float | list[float] | None = None,
              angle: float | list[float] | None = None,
              remove_offset: bool = True,
              firmware: FirmwareInfo | None = None) -> ProgramEntry:
    """A ``ProgramEntry`` for a compiled qick program and the soccfg it was compiled for.

    ``firmware`` is ``firmware_info(soccfg)``: pass it when building many entries for one
    soccfg (``WorkloadManager`` does), so the soccfg is hashed once, not once per program."""
    if acqtype not in ACQTYPES:
        raise InvalidWorkload(f"acqtype must be one of {ACQTYPES}, not {acqtype!r}")
    if getattr(prog, "binprog", None) is None:
        prog.compile()
    args = AcquireArgs.from_json({"rounds": rounds, "threshold": threshold, "angle": angle,
                                  "remove_offset": remove_offset}, 0)
    info = firmware or firmware_info(soccfg)
    return ProgramEntry(dump=prog.dump_prog(), acqtype=acqtype, save_raw=save_raw,
                        save_shots=save_shots, acquire=args, firmware=info.fingerprint,
                        firmware_name=info.name, f_time=info.f_time,
                        qick_version=qick_version(),
                        format_version=FORMAT_VERSION)


def dumps_workload(entries: Iterable[ProgramEntry], compresslevel: int = 6) -> bytes:
    """The bytes of a workload file."""
    from qick.helpers import progs2json
    text = progs2json([e.to_file_dict() for e in entries])
    return gzip.compress(text.encode("utf-8"), compresslevel=compresslevel, mtime=0)


def write_workload(path: str | os.PathLike, entries: Iterable[ProgramEntry]) -> int:
    """Write a workload file atomically (``qickbase.atomicfile``); return its size."""
    data = dumps_workload(entries)
    atomic_write(os.path.abspath(path), data)
    return len(data)


# ---------------------------------------------------------------------------- reading

def _decompress(stream: IO[bytes], max_bytes: int) -> bytes:
    chunks, total = [], 0
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as gz:
            while True:
                chunk = gz.read(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise WorkloadTooLarge(
                        f"the workload decompresses to more than {max_bytes} bytes "
                        "(the board's limit): split it into smaller workloads")
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidWorkload(f"the workload is not a gzip file or is truncated ({exc}): "
                              "write it with WorkloadManager.write() (gzip of progs2json)"
                              ) from None
    return b"".join(chunks)


def read_workload(source: str | os.PathLike | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_programs: int | None = None) -> list[ProgramEntry]:
    """Read and check a workload file (a path, or its bytes). Raises ``WorkloadError``."""
    if isinstance(source, (bytes, bytearray)):
        import io
        raw = _decompress(io.BytesIO(source), max_bytes)
    else:
        try:
            with open(source, "rb") as f:
                raw = _decompress(f, max_bytes)
        except OSError as exc:
            raise InvalidWorkload(f"cannot read the workload file: {exc.strerror}") from None
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=OrderedDict)
    except (ValueError, RecursionError) as exc:
        raise InvalidWorkload(f"the workload is not valid JSON ({str(exc)[:200]}): write it "
                              "with WorkloadManager.write() (gzip of progs2json)") from None
    if not isinstance(data, list):
        raise InvalidWorkload("the workload must be a JSON list of program dumps, "
                              f"not a {type(data).__name__}")
    if not data:
        raise InvalidWorkload("the workload holds no programs: add at least one")
    if max_programs is not None and len(data) > max_programs:
        raise WorkloadTooLarge(
            f"the workload holds {len(data)} programs, over the board's limit of "
            f"{max_programs}: split it into smaller workloads")
    return [_parse_entry(item, i) for i, item in enumerate(data)]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _parse_entry(item: Any, i: int) -> ProgramEntry:
    def bad(what: str) -> InvalidWorkload:
        return InvalidWorkload(f"program {i}: {what}", program=i)

    if not isinstance(item, Mapping):
        raise bad("is not a program dump (a JSON object from prog.dump_prog())")
    keys = _V2_KEYS if "waves" in item else _V1_KEYS
    missing = [k for k in keys if k not in item]
    if missing:
        raise bad(f"the dump lacks {', '.join(missing)}: dump a program with acquire "
                  "support (AveragerProgramV2, AveragerProgram...) with prog.dump_prog()")
    acqtype = item.get("acqtype", "accumulated")
    if acqtype not in ACQTYPES:
        raise bad(f"acqtype must be 'accumulated' or 'decimated', not {acqtype!r}")
    dims = item["loop_dims"]
    if not (isinstance(dims, list) and dims and all(_is_int(d) and d > 0 for d in dims)):
        raise bad(f"loop_dims must be a list of positive integers, not {dims!r}")
    if not (_is_int(item["avg_level"]) and 0 <= item["avg_level"] < len(dims)):
        raise bad(f"avg_level {item['avg_level']!r} is not a loop level of {dims}")
    if not _is_int(item["counter_addr"]):
        raise bad("counter_addr must be an integer")
    for name in ("ro_chs", "gen_chs"):
        chs = item[name]
        if not isinstance(chs, Mapping) or not all(
                str(k).isdigit() and isinstance(v, Mapping) for k, v in chs.items()):
            raise bad(f"{name} must map channel numbers to objects")
    for ch, ro in item["ro_chs"].items():
        if not (_is_int(ro.get("length")) and ro["length"] > 0):
            raise bad(f"readout {ch} has no positive integer length")
        if not (_is_int(ro.get("trigs", 1)) and ro.get("trigs", 1) >= 0):
            raise bad(f"readout {ch} has a bad trigger count {ro.get('trigs')!r}")
        if ro.get("weights") is not None:
            _check_array(ro["weights"], f"program {i}: weights of readout {ch}", i)
    if not isinstance(item["prog_list"], list) or not all(
            isinstance(x, Mapping) for x in item["prog_list"]):
        raise bad("prog_list must be a list of instruction objects")
    envelopes = item["envelopes"]
    if not isinstance(envelopes, list):
        raise bad("envelopes must be a list (one entry per generator)")
    for g, env in enumerate(envelopes):
        envs = env.get("envs") if isinstance(env, Mapping) else None
        if not isinstance(envs, Mapping):
            raise bad(f"envelopes of generator {g} must be an object with 'envs'")
        for name, pulse in envs.items():
            if not (isinstance(pulse, Mapping) and _is_int(pulse.get("addr"))
                    and pulse["addr"] >= 0):
                raise bad(f"envelope {name!r} of generator {g} needs a non-negative addr")
            _check_array(pulse.get("data"), f"program {i}: envelope {name!r} of generator {g}", i)
    meta = item.get(META_KEY)
    if meta is not None and not isinstance(meta, Mapping):
        raise bad(f"'{META_KEY}' must be an object")
    meta = meta or {}
    dump = {k: item[k] for k in keys}
    return ProgramEntry(
        dump=dump, acqtype=acqtype, save_raw=bool(item.get("save_raw", False)),
        save_shots=bool(item.get("save_shots", False)),
        acquire=AcquireArgs.from_json(meta.get("acquire"), i),
        firmware=meta.get("firmware"), firmware_name=meta.get("firmware_name"),
        f_time=_f_time(meta.get("f_time"), i),
        qick_version=meta.get("qick_version"), format_version=meta.get("format"))


def _f_time(value: Any, i: int) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or value <= 0:
        raise InvalidWorkload(f"program {i}: f_time must be a positive number of MHz, "
                              f"not {value!r}", program=i)
    return float(value)


def _check_array(value: Any, where: str, i: int) -> None:
    """An encoded array is ``[base64, shape, dtype]``: numeric dtype, shape matching bytes."""
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and isinstance(value[1], list) and isinstance(value[2], str)):
        raise InvalidWorkload(f"{where} is not an encoded array [base64, shape, dtype]",
                              program=i)
    data, shape, dtype_text = value
    try:
        dtype = np.dtype(dtype_text)
    except TypeError:
        raise InvalidWorkload(f"{where} has an unknown dtype {dtype_text!r}",
                              program=i) from None
    if dtype.hasobject or dtype.kind not in "iuf":
        raise InvalidWorkload(f"{where} has dtype {dtype_text!r}: only integer and float "
                              "arrays are accepted (no objects, no pickle)", program=i)
    if not all(_is_int(n) and n >= 0 for n in shape):
        raise InvalidWorkload(f"{where} has a bad shape {shape!r}", program=i)
    padding = len(data) - len(data.rstrip("="))
    nbytes = len(data) * 3 // 4 - padding
    if nbytes != math.prod(shape) * dtype.itemsize:
        raise InvalidWorkload(f"{where}: its data ({nbytes} bytes) does not match its shape "
                              f"{shape} of {dtype_text}", program=i)


def check_firmware(entries: list[ProgramEntry], soccfg: Any) -> None:
    """Refuse programs compiled for another firmware, naming both."""
    ours = fingerprint(soccfg)
    version = tproc_version(soccfg)
    for i, entry in enumerate(entries):
        if entry.tproc_version != version:
            raise FirmwareMismatch(
                f"program {i} is a tProc v{entry.tproc_version} program"
                + (f" compiled for firmware {entry.firmware_name}" if entry.firmware_name
                   else "")
                + f", but this board runs {describe(soccfg)}: compile it against this board's configuration (soccfg)",
                program=i)
        if entry.firmware and entry.firmware != ours:
            raise FirmwareMismatch(
                f"program {i} was compiled for firmware {entry.firmware_name or entry.firmware}, "
                f"but this board runs {describe(soccfg)}: fetch this board's configuration "
                "and compile the programs again", program=i)


def make_program(entry: ProgramEntry, soccfg: Any, index: int = 0) -> Any:
    """A fresh qick program object loaded from ``entry`` (never reuse one: v1 pitfall)."""
    from qick.asm_v1 import AcquireProgram
    from qick.asm_v2 import AcquireProgramV2
    cls = AcquireProgramV2 if entry.tproc_version == 2 else AcquireProgram
    dump = copy.deepcopy(entry.dump)
    try:
        prog = cls(soccfg)
        prog.load_prog(dump)
        # qick encodes readout weights on dump but does not decode them on load
        for ro in prog.ro_chs.values():
            weights = ro.get("weights")
            if isinstance(weights, list):
                data, shape, dtype = weights
                ro["weights"] = np.frombuffer(base64.b64decode(data),
                                              dtype=np.dtype(dtype)).reshape(shape)
        if prog.binprog is None:
            prog.compile()
    except Exception as exc:  # qick raises many kinds here; all mean "cannot load"
        written = entry.qick_version or "an unknown qick version"
        raise InvalidWorkload(
            f"program {index} could not be loaded by qick {qick_version()} (it was written by "
            f"{written}): {type(exc).__name__}: {exc}. Rebuild it with qick "
            f"{qick_version()} against this board's configuration", program=index) from None
    return prog
