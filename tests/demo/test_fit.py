"""The demo's Lorentzian fit (numpy only): it finds a known resonance within its stated
errors, and says why when there is nothing to fit."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location(
    "demo_fit", Path(__file__).resolve().parents[2] / "demo" / "resonance_fit.py")
fit = sys.modules.setdefault("demo_fit", importlib.util.module_from_spec(SPEC))
SPEC.loader.exec_module(fit)


def notch(freqs, f0=123.4, kappa=0.7, depth=0.8, amplitude=1500.0):
    """|S21| of a notch resonator, whose power is exactly a Lorentzian dip."""
    return amplitude * np.abs(1 - depth / (1 + 2j * (freqs - f0) / kappa))


def test_a_noisy_resonance_is_found_within_its_errors():
    rng = np.random.default_rng(3)
    freqs = np.linspace(118, 129, 151)
    mags = notch(freqs) + rng.normal(0, 15.0, freqs.size)
    res = fit.fit_resonance(freqs, mags)
    assert abs(res.f0 - 123.4) < 5 * res.f0_err and res.f0_err < 0.02
    assert abs(res.fwhm - 0.7) < 5 * res.fwhm_err and res.fwhm_err < 0.05
    assert np.max(np.abs(res.magnitude(freqs) - notch(freqs))) < 60
    quieter = fit.fit_resonance(freqs, notch(freqs) + rng.normal(0, 1.5, freqs.size))
    assert quieter.f0_err < res.f0_err / 3


@pytest.mark.parametrize("freqs, mags, message", [
    (np.linspace(0, 1, 50), np.full(50, 7.0), "no dip"),
    (np.linspace(0, 1, 4), np.array([3.0, 1.0, 2.0, 3.0]), "at least 6 points"),
    (np.linspace(0, 1, 20), np.r_[np.full(19, 2.0), np.nan], "NaN"),
    (np.linspace(130, 140, 60), notch(np.linspace(130, 140, 60), f0=120.0, kappa=0.3),
     "inside the sweep"),
])
def test_nothing_to_fit_says_why(freqs, mags, message):
    with pytest.raises(fit.FitError, match=message):
        fit.fit_resonance(freqs, mags)
