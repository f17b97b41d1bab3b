"""The README's main job (``make demo``) runs end to end and says what it found: the
resonance fitted (f0 and linewidth with their errors), the estimate with the executor's
overhead, and a plot."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_fits_the_resonance_through_the_whole_loop(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "demo" / "run_demo.py"), "--out",
                           str(out), "--points", "41"], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "41 programs came back" in text
    assert re.search(r"41 programs of 100 reps, estimated board time [\d.]+ s \([\d.]+ s in "
                     r"the programs \+ [\d.]+ s executor overhead\)", text), text
    fit = re.search(r"resonance fit: f0 = ([\d.]+) ± ([\d.]+) MHz, linewidth \(FWHM\) "
                    r"([\d.]+) ± ([\d.]+) MHz", text)
    assert fit, text
    f0, f0_err, fwhm, fwhm_err = (float(x) for x in fit.groups())
    # the simulated resonator: 500 MHz, 2 MHz wide
    assert abs(f0 - 500.0) < 0.05 and abs(fwhm - 2.0) < 0.1
    assert 0 < f0_err < 0.05 and 0 < fwhm_err < 0.1
    assert text.rstrip().endswith("DEMO OK")
    assert (out / "results.h5").stat().st_size > 0
    assert (out / "resonance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sweep_is_dense_across_the_dip():
    sys.path.insert(0, str(REPO / "demo"))
    try:
        import run_demo
    finally:
        sys.path.remove(str(REPO / "demo"))
    for points in (41, 201):
        freqs = run_demo.sweep_frequencies(points)
        assert freqs.size == points and (abs(freqs - 500.0) <= 1.0).sum() >= 4
        assert freqs.min() == 460.0 and freqs.max() == 540.0
        assert list(freqs) == sorted(set(freqs))
    # within one linewidth of the resonance: over 4x the points an even sweep would have
    assert (abs(freqs - 500.0) <= 1.0).sum() > 4 * (201 * 2 / 80)
