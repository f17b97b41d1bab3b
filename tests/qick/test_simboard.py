"""The simulated board answers unmodified qick acquire()/acquire_decimated() like hardware."""
from __future__ import annotations


import numpy as np
import pytest

from executor.boards import zcu216_v2
from executor.simboard import Resonator, SimulatedSoc
from qickwork.estimate import estimate_dump
from tests.qick.programs import LoopV1, QickSweep1D, SweepV2

pytestmark = pytest.mark.device310  # device-side code: also run under the board's Python 3.10


def test_acquire_shapes_match_qick_for_a_v2_sweep(soc2):
    prog = SweepV2(soc2, reps=20, final_delay=1.0,
                   cfg={"freq": QickSweep1D("f", 100, 200), "steps": 7})
    avg = prog.acquire(soc2, rounds=2, progress=False)
    # QICK.md: (n_reads, *loop_dims without the averaged axis, 2) per readout
    assert [a.shape for a in avg] == [(1, 7, 2)]
    assert avg[0].dtype == np.float64
    raw = prog.get_raw()
    assert [r.shape for r in raw] == [(20, 7, 1, 2)] and raw[0].dtype == np.int64
    prog.acquire(soc2, threshold=500.0, angle=0.1, progress=False)
    assert [s.shape for s in prog.get_shots()] == [(20, 7, 1)]


def test_poll_data_comes_in_chunks_with_the_hardware_types(soc2):
    prog = SweepV2(soc2, reps=2000, final_delay=1.0, cfg={"freq": 120.0})
    prog.acquire(soc2, progress=False)
    # 10% of an 8192-sample accumulated buffer per chunk: 2000 shots need several
    assert len(prog.stats) == 3
    soc2.start_readout(50, counter_addr=1, ch_list=[0], reads_per_shot=[1])
    chunks = soc2.poll_data()
    n, (data, stats) = chunks[0]
    assert data[0].dtype == np.int32 and data[0].shape == (n, 2)
    assert len(stats) == 4 and stats[3] == n


def test_a_v2_sweep_shows_the_resonance():
    soc = SimulatedSoc(zcu216_v2(), seed=3, resonator=Resonator(f0=153.0, kappa=2.0))
    prog = SweepV2(soc, reps=50, final_delay=1.0,
                   cfg={"freq": QickSweep1D("f", 100, 200), "steps": 101})
    avg = prog.acquire(soc, progress=False)[0][0]
    mag = np.abs(avg[:, 0] + 1j * avg[:, 1])
    freqs = np.linspace(100, 200, 101)
    assert abs(freqs[np.argmin(mag)] - 153.0) <= 1.0
    assert mag.max() > 5 * mag.min()


def test_one_program_per_frequency_shows_the_resonance_on_v1(soc1):
    mags = {}
    for f in (280.0, 300.0, 320.0):
        prog = LoopV1(soc1, {"gen": 1, "ro_len": 100, "freq": f, "reps": 20})
        i, q = prog.acquire(soc1, progress=False)  # v1 AveragerProgram's own format
        mags[f] = abs(i[0][0] + 1j * q[0][0])
    assert mags[300.0] < mags[280.0] / 5 and mags[300.0] < mags[320.0] / 5


def test_decimated_shapes_match_qick(soc2):
    one = SweepV2(soc2, reps=1, final_delay=1.0, cfg={"freq": 140.0})
    dec = one.acquire_decimated(soc2, rounds=2, progress=False)
    length = one.ro_chs[0]["length"]
    assert [d.shape for d in dec] == [(length, 2)]
    many = SweepV2(soc2, reps=4, final_delay=1.0, cfg={"freq": 140.0})
    assert [d.shape for d in many.acquire_decimated(soc2, progress=False)] == [(4, length, 2)]
    assert soc2.get_decimated(0, 0, 10).dtype == np.int16


def test_decimated_over_the_buffer_fails_like_hardware(soc2):
    maxlen = soc2["readouts"][0]["buf_maxlen"]
    prog = SweepV2(soc2, reps=1, final_delay=1.0,
                   cfg={"freq": 140.0, "ro_len": maxlen / soc2["readouts"][0]["f_output"]})
    assert prog.ro_chs[0]["length"] == maxlen  # passes qick's own check (>), not the DMA's
    with pytest.raises(RuntimeError, match="longer or equal to decimated buffer size=4096"):
        prog.acquire_decimated(soc2, progress=False)
    big = SweepV2(soc2, reps=20, final_delay=1.0, cfg={"freq": 140.0})
    with pytest.raises(RuntimeError, match="exceeds buffer size"):
        big.acquire_decimated(soc2, progress=False)


def test_envelope_over_generator_memory_is_refused(soc2):
    with pytest.raises(RuntimeError, match="does not fit in generator 1"):
        soc2.load_envelope(1, np.zeros((16385, 2), dtype=np.int16), 0)


class SteppedClock:
    """A monotonic clock that only its own sleep moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_time_scale_follows_the_estimated_duration(scale):
    clock = SteppedClock()
    soc = SimulatedSoc(zcu216_v2(), seed=1, time_scale=scale, clock=clock, sleep=clock.sleep)
    prog = SweepV2(soc, reps=1000, final_delay=10.0,
                   cfg={"freq": QickSweep1D("f", 100, 200), "steps": 11})
    expected = estimate_dump(prog.dump_prog(), soc.get_cfg()).seconds * scale
    prog.acquire(soc, progress=False)
    # the run took its scaled estimate on the board's clock, to within the last poll's step
    assert expected <= clock.now <= expected + 0.005 + 1e-9


def test_the_soc_is_also_a_qickconfig(soc2):
    prog = SweepV2(soc2, reps=1, final_delay=1.0, cfg={"freq": 140.0})
    assert prog.soccfg is soc2
    prog.acquire(soc2, progress=False)
    for name in ("start_src", "stop_tproc", "set_nyquist", "load_bin_program", "config_avg",
                 "enable_buf", "reload_mem", "clear_tproc_counter", "prepare_round",
                 "start_readout", "poll_data", "cleanup_round"):
        assert soc2.calls.get(name, 0) >= 1, name
