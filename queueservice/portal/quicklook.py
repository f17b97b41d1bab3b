"""The quick look at a workload's results (the portal's workloads page): pure functions from
the results ``qickwork.results.read_results`` reads to the numbers and the plot shown.

Per program, each readout's averaged IQ: the mean of the I and Q of every point the
program's ``acquire()`` (or ``acquire_decimated()``) returned for it, with its magnitude
and phase. The plot draws the magnitude and the phase of each readout:

- across programs (one point each, the mean) when two or more programs share one shape:
  a sweep run as one program per point, side by side;
- else across the points of the first program with more than one point (a sweep inside
  one program).

The work is bounded: at most ``MAX_PROGRAMS`` programs are looked at, ``MAX_POINTS``
points drawn per line (evenly picked), ``MAX_READOUTS`` readouts per program; ``notes``
say what was left out. No HTTP and no files here: ``look`` takes the ``Results``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qickwork.results import Results

MAX_PROGRAMS = 200
MAX_POINTS = 400
MAX_READOUTS = 8
#: the plot's size in SVG units (it scales to the page's width)
WIDTH, PANEL_HEIGHT, MARGIN_LEFT, MARGIN_RIGHT, MARGIN_Y = 640, 180, 70, 10, 22


@dataclass(frozen=True)
class ReadoutIQ:
    """One readout's averaged IQ over ``points`` points (NaN when it has none)."""

    readout: int
    i: float
    q: float
    points: int

    @property
    def magnitude(self) -> float:
        return math.hypot(self.i, self.q)

    @property
    def phase_degrees(self) -> float:
        return math.degrees(math.atan2(self.q, self.i))


@dataclass(frozen=True)
class ProgramLook:
    index: int
    acqtype: str
    shape: tuple[int, ...] | None  # each readout's array shape (None: they differ)
    readouts: tuple[ReadoutIQ, ...]


@dataclass(frozen=True)
class Line:
    """One readout's values along the plot's x axis."""

    readout: int
    x: tuple[float, ...]
    magnitude: tuple[float, ...]
    phase_degrees: tuple[float, ...]


@dataclass(frozen=True)
class Plot:
    x_label: str  # "program" or "point of program N"
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class QuickLook:
    programs: tuple[ProgramLook, ...]
    plot: Plot | None
    notes: tuple[str, ...] = field(default=())


def _iq_points(array: np.ndarray) -> np.ndarray | None:
    """A readout's (I, Q) pairs as complex points, flattened (None: not IQ-shaped)."""
    array = np.asarray(array)
    if array.ndim == 0 or array.shape[-1] != 2 or not np.issubdtype(array.dtype, np.number):
        return None
    pairs = array.reshape(-1, 2).astype(np.float64)
    return pairs[:, 0] + 1j * pairs[:, 1]


def _mean(points: np.ndarray, readout: int) -> ReadoutIQ:
    finite = points[np.isfinite(points)]
    if finite.size == 0:
        return ReadoutIQ(readout, math.nan, math.nan, 0)
    mean = complex(finite.mean())
    return ReadoutIQ(readout, mean.real, mean.imag, int(finite.size))


def _picked(count: int) -> np.ndarray:
    """At most ``MAX_POINTS`` indexes out of ``count``, evenly spread, first and last kept."""
    if count <= MAX_POINTS:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, MAX_POINTS).round().astype(int))


def look(results: Results) -> QuickLook:
    """The quick look at ``results`` (see the module's docstring)."""
    notes: list[str] = []
    programs = list(results.programs)
    if len(programs) > MAX_PROGRAMS:
        notes.append(f"Only the first {MAX_PROGRAMS} of {len(programs)} programs are shown: "
                     "download the results for the rest.")
        programs = programs[:MAX_PROGRAMS]
    looks, points_of = [], {}
    skipped_readouts = False
    for program in programs:
        arrays = list(program.data or [])
        if len(arrays) > MAX_READOUTS:
            skipped_readouts = True
            arrays = arrays[:MAX_READOUTS]
        readouts, shapes, points = [], set(), []
        for k, array in enumerate(arrays):
            iq = _iq_points(array)
            if iq is None:
                continue
            shapes.add(np.shape(array))
            readouts.append(_mean(iq, k))
            points.append(iq)
        points_of[program.index] = points
        looks.append(ProgramLook(program.index, program.acqtype,
                                 next(iter(shapes)) if len(shapes) == 1 else None,
                                 tuple(readouts)))
    if skipped_readouts:
        notes.append(f"Only the first {MAX_READOUTS} readouts of each program are shown.")
    if any(not p.readouts for p in looks):
        notes.append("Programs without averaged IQ data (no acquire() result) show no "
                     "numbers.")
    return QuickLook(tuple(looks), _plot(looks, points_of, notes), tuple(notes))


def _plot(looks: list[ProgramLook], points_of: dict[int, list[np.ndarray]],
          notes: list[str]) -> Plot | None:
    with_data = [p for p in looks if p.readouts]
    shapes = {(p.shape, len(p.readouts)) for p in with_data}
    if len(with_data) >= 2 and len(shapes) == 1 and next(iter(shapes))[0] is not None:
        picked = [with_data[i] for i in _picked(len(with_data))]
        if len(picked) < len(with_data):
            notes.append(f"The plot draws {len(picked)} of the {len(with_data)} programs, "
                         "evenly spread.")
        lines = []
        for k in range(len(picked[0].readouts)):
            means = [p.readouts[k] for p in picked]
            lines.append(Line(means[0].readout, tuple(float(p.index) for p in picked),
                              tuple(m.magnitude for m in means),
                              tuple(m.phase_degrees for m in means)))
        return Plot("program", tuple(lines))
    if len(with_data) >= 2:
        notes.append("The programs do not share one shape: no plot across programs.")
    swept = next((p for p in with_data if max(len(a) for a in points_of[p.index]) > 1), None)
    if swept is None:
        return None
    lines = []
    for readout, points in zip(swept.readouts, points_of[swept.index]):
        keep = _picked(len(points))
        if len(keep) < len(points):
            notes.append(f"The plot draws {len(keep)} of the {len(points)} points of "
                         f"readout {readout.readout}, evenly spread.")
        chosen = points[keep]
        lines.append(Line(readout.readout, tuple(float(i) for i in keep),
                          tuple(float(v) for v in np.abs(chosen)),
                          tuple(float(v) for v in np.degrees(np.angle(chosen)))))
    return Plot(f"point of program {swept.index}", tuple(lines))


# -- drawing: SVG coordinates ------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    """One panel of the drawing: its title, value range and one polyline per readout."""

    title: str
    top: int
    low: float
    high: float
    x_low: float
    x_high: float
    polylines: tuple[tuple[int, str], ...]  # (readout, "x,y x,y ...")

    @property
    def labels(self) -> tuple[str, str]:
        """The value axis's two ends as text (``axis_labels``)."""
        return axis_labels(self.low, self.high)


def axis_labels(low: float, high: float) -> tuple[str, str]:
    """An axis's two ends with the fewest significant digits (4 at least, 12 at most) that
    tell them apart: a narrow range far from zero (a magnitude of 1999.9 to 2000.2) would
    read "2000" at both ends with a fixed 4."""
    for digits in range(4, 13):
        ends = (f"{low:.{digits}g}", f"{high:.{digits}g}")
        if ends[0] != ends[1]:
            return ends
    return ends


def _finite_range(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if low == high:
        pad = abs(low) * 0.05 or 1.0
        return low - pad, high + pad
    return low, high


def panels(plot: Plot) -> tuple[Panel, ...]:
    """The magnitude panel above the phase panel, each line's points in SVG units (a
    point that is not a finite number is left out of its line)."""
    xs = [x for line in plot.lines for x in line.x]
    x_low, x_high = _finite_range(xs)
    inner = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    drawn = []
    for n, (title, pick) in enumerate((("Magnitude", lambda ln: ln.magnitude),
                                       ("Phase (degrees)", lambda ln: ln.phase_degrees))):
        top = n * (PANEL_HEIGHT + MARGIN_Y) + MARGIN_Y
        low, high = _finite_range([v for line in plot.lines for v in pick(line)])
        polylines = []
        for line in plot.lines:
            points = []
            for x, y in zip(line.x, pick(line)):
                if not (math.isfinite(x) and math.isfinite(y)):
                    continue
                px = MARGIN_LEFT + (x - x_low) / (x_high - x_low) * inner
                py = top + PANEL_HEIGHT - (y - low) / (high - low) * PANEL_HEIGHT
                points.append(f"{px:.1f},{py:.1f}")
            polylines.append((line.readout, " ".join(points)))
        drawn.append(Panel(title, top, low, high, x_low, x_high, tuple(polylines)))
    return tuple(drawn)


def height() -> int:
    """The drawing's height in SVG units (two panels, their titles, the x axis's label)."""
    return 2 * (PANEL_HEIGHT + MARGIN_Y) + MARGIN_Y + 20
