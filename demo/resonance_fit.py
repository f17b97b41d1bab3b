"""The demo's resonance fit: a Lorentzian dip fitted to the measured power, numpy only.

For a resonator seen in transmission (a notch), the power ``|S21|^2`` is exactly a
Lorentzian dip, ``offset - depth / (1 + (2 (f - f0) / fwhm)^2)``: ``f0`` is the resonance
and ``fwhm`` its linewidth (full width at half depth of the power dip, kappa / 2 pi). The
fit is a small Levenberg-Marquardt least squares with the analytic Jacobian; the errors
are the square roots of the covariance's diagonal, scaled by the residuals' variance.

numpy only, on purpose: scipy (``curve_fit``) would do the same in one call, but it is a
large dependency the project does not otherwise need.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class FitError(Exception):
    """The data show no dip the fit can settle on; the message says why."""


@dataclass(frozen=True)
class Resonance:
    f0: float            # MHz
    f0_err: float
    fwhm: float          # MHz, full width at half depth of the power dip
    fwhm_err: float
    offset: float        # power off resonance
    depth: float         # power dip at f0

    def magnitude(self, freqs: np.ndarray) -> np.ndarray:
        """The fitted curve as a magnitude (the square root of the fitted power)."""
        power = _model(np.array([self.offset, self.depth, self.f0, self.fwhm]),
                       np.asarray(freqs, dtype=float))
        return np.sqrt(np.clip(power, 0.0, None))


def _model(p: np.ndarray, f: np.ndarray) -> np.ndarray:
    offset, depth, f0, fwhm = p
    return offset - depth / (1.0 + (2.0 * (f - f0) / fwhm) ** 2)


def _jacobian(p: np.ndarray, f: np.ndarray) -> np.ndarray:
    _, depth, f0, fwhm = p
    x = 2.0 * (f - f0) / fwhm
    lor = 1.0 / (1.0 + x ** 2)
    return np.column_stack([np.ones_like(f), -lor,
                            -4.0 * depth * x * lor ** 2 / fwhm,
                            -2.0 * depth * x ** 2 * lor ** 2 / fwhm])


def _first_guess(f: np.ndarray, power: np.ndarray) -> np.ndarray:
    offset = float(np.median(power[power >= np.percentile(power, 75)]))
    low = int(np.argmin(power))
    depth = offset - float(power[low])
    below = f[power < offset - depth / 2]
    spacing = float(np.min(np.diff(np.unique(f))))
    fwhm = max(float(below.max() - below.min()) if below.size else 0.0, spacing)
    return np.array([offset, depth, float(f[low]), fwhm])


def fit_resonance(freqs: np.ndarray, magnitudes: np.ndarray, *,
                  max_iterations: int = 200) -> Resonance:
    """Fit the Lorentzian dip of ``magnitudes**2`` over ``freqs`` (MHz); ``FitError`` when
    there are too few points, no dip, or the fit does not settle inside the sweep."""
    f = np.asarray(freqs, dtype=float)
    power = np.asarray(magnitudes, dtype=float) ** 2
    if f.shape != power.shape or f.size < 6:
        raise FitError(f"need at least 6 points of frequency and magnitude, got {f.size}")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(power))):
        raise FitError("the data hold NaN or infinite values")
    p = _first_guess(f, power)
    if p[1] <= 0:
        raise FitError("the magnitude has no dip: is the resonance inside the sweep?")
    cost = float(np.sum((power - _model(p, f)) ** 2))
    damping = 1e-3
    for _ in range(max_iterations):
        jac = _jacobian(p, f)
        normal = jac.T @ jac
        step = np.linalg.solve(normal + damping * np.diag(np.diag(normal)),
                               jac.T @ (power - _model(p, f)))
        trial = p + step
        trial_cost = float(np.sum((power - _model(trial, f)) ** 2)) if trial[3] > 0 \
            else np.inf
        if trial_cost < cost:
            done = abs(cost - trial_cost) <= 1e-12 * cost
            p, cost, damping = trial, trial_cost, max(damping / 10, 1e-12)
            if done:
                break
        else:
            damping *= 10
            if damping > 1e12:
                break
    offset, depth, f0, fwhm = (float(v) for v in p)
    if not (depth > 0 and fwhm > 0 and f.min() <= f0 <= f.max()):
        raise FitError(f"the fit did not settle on a dip inside the sweep (f0 {f0:.3f} MHz, "
                       f"linewidth {fwhm:.3f} MHz)")
    jac = _jacobian(p, f)
    variance = cost / (f.size - p.size)
    try:
        errors = np.sqrt(np.diag(np.linalg.inv(jac.T @ jac)) * variance)
    except np.linalg.LinAlgError:
        raise FitError("the fit's parameters are not determined by the data") from None
    return Resonance(f0, float(errors[2]), abs(fwhm), float(errors[3]), offset, depth)
