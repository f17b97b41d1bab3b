"""Small QICK programs used by the tests: the kind users write (v2 sweep, v1 averager)."""
from __future__ import annotations

from qick.asm_v2 import AveragerProgramV2, QickSweep1D
from qick.averager_program import AveragerProgram

__all__ = ["SweepV2", "LoopV1", "QickSweep1D"]


class SweepV2(AveragerProgramV2):
    """Pulse + readout on gen 0 / readout 0; ``freq`` may be a QickSweep1D over loop 'f'."""

    def _initialize(self, cfg):
        self.declare_gen(ch=0, nqz=1)
        self.declare_readout(ch=0, length=cfg.get("ro_len", 1.0))
        self.add_readoutconfig(ch=0, name="ro", freq=cfg["freq"], gen_ch=0)
        if cfg.get("steps"):
            self.add_loop("f", cfg["steps"])
        self.add_pulse(ch=0, name="p", style="const", length=0.5, freq=cfg["freq"],
                       phase=0, gain=0.5)

    def _body(self, cfg):
        self.send_readoutconfig(ch=0, name="ro", t=0)
        self.pulse(ch=0, name="p", t=0)
        self.trigger(ros=[0], t=0.1)


class LoopV1(AveragerProgram):
    """tProc v1: a Gaussian pulse on ``gen`` read by readout 0 at ``freq``."""

    def initialize(self):
        cfg = self.cfg
        self.declare_gen(ch=cfg["gen"], nqz=1)
        self.declare_readout(ch=0, length=cfg["ro_len"], freq=cfg["freq"], gen_ch=cfg["gen"])
        f = self.freq2reg(cfg["freq"], gen_ch=cfg["gen"], ro_ch=0)
        self.add_gauss(ch=cfg["gen"], name="g", sigma=16, length=64)
        self.set_pulse_registers(ch=cfg["gen"], style="arb", freq=f, phase=0, gain=10000,
                                 waveform="g")
        self.synci(200)

    def body(self):
        self.measure(pulse_ch=self.cfg["gen"], adcs=[0], adc_trig_offset=50, wait=True,
                     syncdelay=self.us2cycles(2))
