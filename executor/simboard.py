"""A simulated QICK board: ``SimulatedSoc`` answers every call unmodified qick makes.

``SimulatedSoc`` is a ``QickConfig`` (so code that passes ``soc`` as the soccfg works) and
implements the ``QickSoc`` methods that ``acquire()``, ``acquire_decimated()`` and
``run_rounds()`` call (see /work/shared/QICK.md): setup (``start_src``, ``stop_tproc``,
``load_envelope``, ``load_weights``, ``set_nyquist``, ``set_mixer_freq``,
``config_mux_gen``, ``configure_readout``, ``config_mux_readout``, ``load_bin_program``),
each round (``config_avg``, ``config_buf``, ``enable_buf``, ``reload_mem``,
``clear_tproc_counter``, ``prepare_round``, ``start_src``), the streamed accumulated
readout (``start_readout`` then ``poll_data`` in chunks of at most 10% of the accumulated
buffer, like qick's streamer), the decimated readout (``start_tproc``,
``get_tproc_counter``, ``get_decimated``, ``get_accumulated``) and ``cleanup_round``.
Data types and shapes are the hardware's: int32 ``(n, 2)`` accumulated chunks, int16
``(N, 2)`` decimated data. Requests over a buffer fail as on hardware: a decimated transfer
of ``buf_maxlen`` samples or more raises ``RuntimeError``.

Signal model. One resonator sits in front of every readout: its transmission
``S21(f) = (1 - depth / (1 + 2j (f - f0) / kappa)) * exp(-2j pi f delay)`` is a Lorentzian
dip of width ``kappa`` at ``f0`` with a linear phase roll (cable delay). Each decimated
sample is ``amplitude * S21(f)`` (rising with the resonator's ring-up time) plus Gaussian
noise of ``noise`` per sample, I and Q; an accumulated value is the sum over the readout
window. ``f`` is the readout frequency the program configured, per shot:

* PYNQ-configured readouts (tProc v1 firmware): the frequency passed to
  ``configure_readout``;
* tProc-configured readouts (tProc v2): the frequency word of the waveform the program
  sends to the readout's tProc port, and its sweep over the loops when the program steps it
  (``QickSweep1D`` in an ``AveragerProgramV2``: the increments the loops apply to it).

So a frequency sweep (one program per frequency, or one v2 sweep) shows the resonance. The
simulated board learns which program runs from the program object that calls
``load_bin_program`` (qick's ``config_all``), or from ``attach_program(prog)``.

Time. With ``time_scale=0`` everything returns as fast as possible. With ``time_scale=s``
a round takes ``s`` times the program's estimated duration (``qickwork.estimate``): the
shot counter and the streamed data advance with the clock (``clock`` and ``sleep``: the
monotonic clock and its sleep, replaced in tests by a clock the sleep moves).
"""
from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from qick.qick_asm import QickConfig

from qickwork.estimate import estimate_dump


@dataclass
class Resonator:
    """The simulated device under test, seen by every readout. Frequencies in MHz."""
    f0: float = 500.0
    kappa: float = 2.0          # full width at half depth
    depth: float = 0.9          # 1 - |S21| at f0
    amplitude: float = 2000.0   # ADC units per decimated sample, off resonance
    delay_us: float = 0.05      # cable delay: phase rolls by 2 pi f delay
    noise: float = 40.0         # standard deviation per decimated sample, I and Q

    def s21(self, f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=float)
        dip = 1 - self.depth / (1 + 2j * (f - self.f0) / self.kappa)
        return dip * np.exp(-2j * np.pi * f * self.delay_us)


_LOOP_TEST = re.compile(r"^(r\d+)\s*-\s*#(-?\d+)$")
_WAVE_ADDR = re.compile(r"^&(\d+)$")


def _v2_loops(prog_list: list) -> list[tuple[str, int, int, int]]:
    """Loops of a v2 program as (label, first index, jump index, count), outermost first."""
    loops = []
    for idx, inst in enumerate(prog_list[:-2]):
        if inst.get("CMD") == "REG_WR" and inst.get("SRC") == "label":
            test, jump = prog_list[idx + 1], prog_list[idx + 2]
            m = _LOOP_TEST.match(str(test.get("OP", "")).strip())
            if test.get("CMD") == "TEST" and jump.get("CMD") == "JUMP" and m:
                loops.append((inst.get("LABEL"), idx + 2, int(m.group(2)) + 1))
    return loops


def _v2_wave_values(prog: Any, wave: int, loop_dims: list[int]) -> np.ndarray | None:
    """The frequency word of waveform ``wave`` at every shot, flattened (C order), or None
    when the program's loop structure is not the nested-loop pattern we recognize."""
    try:
        start = int(prog.waves[wave]["freq"])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    prog_list = list(prog.prog_list)
    labels = {name: int(str(addr).lstrip("&")) for name, addr in (prog.labels or {}).items()}
    addr_to_idx = {inst.get("P_ADDR"): i for i, inst in enumerate(prog_list)}
    loops = []
    for label, jump_idx, count in _v2_loops(prog_list):
        if label in labels and labels[label] in addr_to_idx:
            loops.append((addr_to_idx[labels[label]], jump_idx, count))
    loops.sort()
    total = math.prod(loop_dims)
    if [c for _, _, c in loops] != list(loop_dims):
        return np.full(total, start, dtype=np.int64) if not loops else None
    # increments of w0 (the frequency word) of this wave, attributed to the innermost loop
    block = [0] * len(loops)
    current_wave, r2 = None, None
    for idx, inst in enumerate(prog_list):
        cmd, dst = inst.get("CMD"), inst.get("DST")
        if cmd == "REG_WR" and dst == "r_wave":
            current_wave = inst.get("ADDR")
        elif cmd == "REG_WR" and dst == "r2" and inst.get("SRC") == "imm":
            m = re.match(r"^#(-?\d+)$", str(inst.get("LIT", "")))
            r2 = int(m.group(1)) if m else None
        elif cmd == "REG_WR" and dst == "w0" and current_wave == f"&{wave}":
            op = str(inst.get("OP", "")).replace(" ", "")
            m = re.match(r"^w0\+#(-?\d+)$", op)
            if m:
                step = int(m.group(1))
            elif op == "w0+r2" and r2 is not None:
                step = r2
            else:
                return None
            inside = [k for k, (s, e, _) in enumerate(loops) if s <= idx <= e]
            if inside:
                block[max(inside)] += step
    full = [0] * len(loops)
    for k in reversed(range(len(loops))):
        inner = loops[k + 1][2] * full[k + 1] if k + 1 < len(loops) else 0
        full[k] = block[k] + inner
    grids = np.indices(loop_dims).reshape(len(loop_dims), -1)
    values = start + sum(g.astype(np.int64) * f for g, f in zip(grids, full))
    return values


def _signed32(v: np.ndarray) -> np.ndarray:
    return ((v + 2 ** 31) % 2 ** 32) - 2 ** 31


class SimulatedSoc(QickConfig):
    """A stand-in for ``qick.QickSoc``: see the module docstring."""

    def __init__(self, soccfg: dict | str, *, resonator: Resonator | None = None,
                 seed: int | None = None, time_scale: float = 0.0, max_chunks_per_poll: int = 8,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(soccfg)
        self._clock, self._sleep = clock, sleep
        tproc = self["tprocs"][0]["type"]
        self.TPROC_VERSION = 2 if tproc == "qick_processor" else 1
        self.resonator = resonator or Resonator()
        self.rng = np.random.default_rng(seed)
        self.time_scale = float(time_scale)
        self.max_chunks_per_poll = max_chunks_per_poll
        n_gen, n_ro = len(self["gens"]), len(self["readouts"])
        self.envelopes: list[dict[int, np.ndarray]] = [{} for _ in range(n_gen)]
        self.nyquist = [1] * n_gen
        self.mixer_freq = [0.0] * n_gen
        self.ro_regs: list[dict] = [{} for _ in range(n_ro)]
        self.avg_cfg: list[dict] = [{} for _ in range(n_ro)]
        self.buf_cfg: list[dict] = [{} for _ in range(n_ro)]
        self.enabled: list[tuple[bool, bool]] = [(False, False)] * n_ro
        self.binprog: Any = None
        self.program: Any = None
        self.src = "internal"
        self.calls: dict[str, int] = {}
        self._run_start: float | None = None
        self._total = 0
        self._dec: dict[int, np.ndarray] = {}
        self._stream: dict | None = None

    # ------------------------------------------------------------ bookkeeping
    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def attach_program(self, prog: Any) -> None:
        """Tell the board which program object runs (done for you by ``config_all``)."""
        self.program = prog

    def _program_shots(self) -> int | None:
        dims = getattr(self.program, "loop_dims", None)
        return math.prod(dims) if dims else None

    def _shot_seconds(self) -> float:
        if self.time_scale <= 0 or self.program is None:
            return 0.0
        try:
            est = estimate_dump(self.program.dump_prog(), self.get_cfg())
        except Exception:  # an odd program must not break the simulation: run at full speed
            return 0.0
        return est.shot_seconds * self.time_scale

    # ------------------------------------------------------------ setup calls
    def start_src(self, src: str) -> None:
        self._count("start_src")
        if src not in ("internal", "external"):
            raise RuntimeError(f"start source must be 'internal' or 'external', not {src!r}")
        self.src = src

    def stop_tproc(self, lazy: bool = False) -> None:
        self._count("stop_tproc")
        self._run_start = None

    def load_envelope(self, ch: int, data: Any, addr: int) -> None:
        self._count("load_envelope")
        arr = np.asarray(data, dtype=np.int16)
        maxlen = self["gens"][ch]["maxlen"]
        if addr + len(arr) > maxlen:
            raise RuntimeError(f"envelope of {len(arr)} samples at address {addr} does not "
                               f"fit in generator {ch}'s memory of {maxlen} samples")
        self.envelopes[ch][addr] = arr

    def load_weights(self, ch: int, data: Any, addr: int = 0) -> None:
        self._count("load_weights")

    def set_nyquist(self, ch: int, nqz: int, force: bool = False) -> None:
        self._count("set_nyquist")
        if nqz not in (1, 2):
            raise RuntimeError(f"Nyquist zone must be 1 or 2, not {nqz}")
        self.nyquist[ch] = nqz

    def set_mixer_freq(self, ch: int, f: float, ro_ch: int | None = None,
                       phase_reset: bool = True, fullscale: bool = False) -> None:
        self._count("set_mixer_freq")
        self.mixer_freq[ch] = f

    def config_mux_gen(self, ch: int, tones: Any) -> None:
        self._count("config_mux_gen")

    def configure_readout(self, ch: int, ro_regs: dict) -> None:
        self._count("configure_readout")
        self.ro_regs[ch] = dict(ro_regs)

    def config_mux_readout(self, pfbpath: str, cfgs: Any, sel: Any = None) -> None:
        self._count("config_mux_readout")

    def load_bin_program(self, binprog: Any, load_mem: bool = True) -> None:
        self._count("load_bin_program")
        self.binprog = binprog
        # qick's config_all calls us from the program object: that is the program to simulate
        caller = sys._getframe(1).f_locals.get("self")
        if caller is not None and hasattr(caller, "dump_prog") and hasattr(caller, "ro_chs"):
            self.program = caller

    # ------------------------------------------------------------ per round
    def config_avg(self, ch: int, address: int = 0, length: int = 1, edge_counting: bool = False,
                   high_threshold: int = 1000, low_threshold: int = 0) -> None:
        self._count("config_avg")
        self.avg_cfg[ch] = {"address": address, "length": length, "edge_counting": edge_counting}

    def config_buf(self, ch: int, address: int = 0, length: int = 1) -> None:
        self._count("config_buf")
        self.buf_cfg[ch] = {"address": address, "length": length}

    def enable_buf(self, ch: int, enable_avg: bool = True, enable_buf: bool = True) -> None:
        self._count("enable_buf")
        self.enabled[ch] = (enable_avg, enable_buf)

    def reload_mem(self) -> None:
        self._count("reload_mem")

    def clear_tproc_counter(self, addr: int) -> None:
        self._count("clear_tproc_counter")
        self._run_start = None
        self._total = 0

    def prepare_round(self) -> None:
        self._count("prepare_round")

    def cleanup_round(self) -> None:
        self._count("cleanup_round")

    # ------------------------------------------------------------ running
    def start_tproc(self) -> None:
        """Run the loaded program: shots advance with the (scaled) clock."""
        self._count("start_tproc")
        total = self._program_shots()
        self._total = total if total is not None else 2 ** 31 - 1
        self._shot_s = self._shot_seconds()
        self._run_start = self._clock()
        self._dec = {}
        for ch, (_avg, buf) in enumerate(self.enabled):
            if buf and self.buf_cfg[ch] and total is not None:
                self._dec[ch] = self._decimated_round(ch, total)

    def get_tproc_counter(self, addr: int) -> int:
        self._count("get_tproc_counter")
        if self._run_start is None:
            return 0
        if self._shot_s <= 0:
            return self._total
        done = int((self._clock() - self._run_start) / self._shot_s)
        if done < self._total:
            self._sleep(min(self._shot_s, 0.005))
        return min(self._total, done)

    def _trigs(self, ch: int) -> int:
        ro = getattr(self.program, "ro_chs", {}).get(ch) if self.program is not None else None
        return int(ro["trigs"]) if ro else 1

    def _shot_freqs(self, ch: int, total: int) -> np.ndarray:
        """Readout frequency (MHz) of every shot, flattened."""
        rocfg = self["readouts"][ch]
        if "tproc_ctrl" not in rocfg:
            f = self.ro_regs[ch].get("f_rounded")
            return np.full(total, abs(f) if f is not None else np.nan)
        prog = self.program
        port = str(rocfg["tproc_ctrl"])
        wave = None
        for inst in getattr(prog, "prog_list", []) or []:
            if inst.get("CMD") == "WPORT_WR" and str(inst.get("DST")) == port:
                m = _WAVE_ADDR.match(str(inst.get("ADDR", "")))
                if m:
                    wave = int(m.group(1))
                    break
        if wave is None:
            return np.full(total, np.nan)
        values = _v2_wave_values(prog, wave, list(prog.loop_dims))
        if values is None or len(values) != total:
            try:
                values = np.full(total, int(prog.waves[wave]["freq"]))
            except (KeyError, IndexError, TypeError, ValueError):
                return np.full(total, np.nan)
        freqs = _signed32(values) * rocfg["f_dds"] / 2 ** rocfg["b_dds"]
        return np.abs(freqs)

    def _response(self, ch: int, total: int) -> np.ndarray:
        """Complex noiseless sample value per shot."""
        freqs = self._shot_freqs(ch, total)
        s21 = np.where(np.isnan(freqs), 1.0 + 0j, self.resonator.s21(np.nan_to_num(freqs)))
        return self.resonator.amplitude * s21

    def _decimated_round(self, ch: int, total: int) -> np.ndarray:
        ro = getattr(self.program, "ro_chs", {}).get(ch, {}) if self.program else {}
        length = int(ro.get("length", self.buf_cfg[ch]["length"]))
        trigs = self._trigs(ch)
        n = length * trigs * total
        if n > self["readouts"][ch]["buf_maxlen"] * 4:
            # more than the hardware could ever hold: get_decimated will refuse anyway
            return np.zeros((0, 2), dtype=np.int16)
        resp = np.repeat(self._response(ch, total), trigs)
        t_us = np.arange(length) / self["readouts"][ch]["f_output"]
        ring = 1 - np.exp(-t_us * np.pi * self.resonator.kappa)
        wave = resp[:, None] * ring[None, :]
        noise = self.rng.normal(0, self.resonator.noise, (len(resp), length, 2))
        iq = np.stack([wave.real, wave.imag], axis=-1) + noise
        return np.clip(np.round(iq), -32768, 32767).astype(np.int16).reshape(-1, 2)

    def get_decimated(self, ch: int, address: int = 0, length: int | None = None) -> np.ndarray:
        self._count("get_decimated")
        maxlen = self["readouts"][ch]["buf_maxlen"]
        if length is None:
            length = maxlen
        if length >= maxlen:
            raise RuntimeError("requested length=%d longer or equal to decimated buffer size=%d"
                               % (length, maxlen))
        data = self._dec.get(ch)
        if data is None or len(data) < address + length:
            data = np.zeros((address + length, 2), dtype=np.int16)
        return data[address:address + length].copy()

    def get_accumulated(self, ch: int, address: int = 0, length: int | None = None) -> np.ndarray:
        self._count("get_accumulated")
        maxlen = self["readouts"][ch]["avg_maxlen"]
        if length is None:
            length = maxlen
        if length >= maxlen:
            raise RuntimeError("length=%d longer than %d" % (length, maxlen))
        data = self._dec.get(ch)
        window = int(self.avg_cfg[ch].get("length", 1)) or 1
        if data is None or len(data) < (address + length) * window:
            return np.zeros((length, 2), dtype=np.int32)
        sums = data.astype(np.int64).reshape(-1, window, 2).sum(axis=1)
        return sums[address:address + length].astype(np.int32)

    # ------------------------------------------------------------ streamed readout
    def start_readout(self, total_shots: int, counter_addr: int = 1, ch_list: Any = None,
                      reads_per_shot: Any = 1, stride: int | None = None) -> None:
        self._count("start_readout")
        if ch_list is None:
            ch_list = [0, 1]
        if isinstance(reads_per_shot, int):
            reads_per_shot = [reads_per_shot] * len(ch_list)
        if stride is None:
            shots = [self["readouts"][ch]["avg_maxlen"] / reads_per_shot[i]
                     for i, ch in enumerate(ch_list)]
            stride = max(1, int(0.1 * min(shots)))
        for i, ch in enumerate(ch_list):
            if stride * reads_per_shot[i] >= self["readouts"][ch]["avg_maxlen"]:
                raise RuntimeError("Overflowed the averages buffer (%d unread samples >= "
                                   "buffer size %d)." % (stride * reads_per_shot[i],
                                                         self["readouts"][ch]["avg_maxlen"]))
        responses = [np.repeat(self._response(ch, total_shots), reads_per_shot[i])
                     for i, ch in enumerate(ch_list)]
        self._stream = {"total": total_shots, "sent": 0, "stride": stride, "ch_list": list(ch_list),
                        "reads": list(reads_per_shot), "responses": responses}
        self.start_tproc()
        self._total = total_shots

    def poll_data(self, totaltime: float = 0.1, timeout: float | None = None) -> list:
        """Chunks of ``(n_new_shots, (data_per_ch, stats))``, oldest first."""
        self._count("poll_data")
        st = self._stream
        if st is None:
            return []
        out = []
        deadline = self._clock() + max(totaltime, 0.0)
        while st["sent"] < st["total"] and len(out) < self.max_chunks_per_poll:
            available = self.get_tproc_counter(1)
            if available < min(st["sent"] + st["stride"], st["total"]):
                if out and self._clock() > deadline:
                    break
                continue
            new = min(available - st["sent"], st["stride"])
            data = []
            for i, ch in enumerate(st["ch_list"]):
                reads = st["reads"][i]
                window = int(self.avg_cfg[ch].get("length", 1)) or 1
                resp = st["responses"][i][st["sent"] * reads:(st["sent"] + new) * reads]
                noise = self.rng.normal(0, self.resonator.noise * math.sqrt(window),
                                        (len(resp), 2))
                iq = np.stack([resp.real, resp.imag], axis=-1) * window + noise
                data.append(np.round(iq).astype(np.int32))
            addr = st["sent"] * st["reads"][0] % self["readouts"][0]["avg_maxlen"]
            stats = (self._clock() - (self._run_start or 0.0), available, addr, new)
            st["sent"] += new
            out.append((new, (data, stats)))
        if st["sent"] >= st["total"]:
            self.src = "internal"
        return out
