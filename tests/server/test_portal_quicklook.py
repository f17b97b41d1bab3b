"""The quick look's math (``queueservice.portal.quicklook``), without HTTP: each readout's
averaged IQ with magnitude and phase, the plot across a sweep's programs or across one
program's points, the caps on what is drawn, and the SVG coordinates."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qickwork.results import ProgramResult, Results
from queueservice.portal import quicklook
from queueservice.portal.quicklook import look, panels


def program(index: int, *readouts: np.ndarray, acqtype: str = "accumulated") -> ProgramResult:
    arrays = [np.asarray(r, dtype=float) for r in readouts]
    if acqtype == "decimated":
        return ProgramResult(index, acqtype, 0.1, dec=arrays)
    return ProgramResult(index, acqtype, 0.1, avg=arrays)


def results(*programs: ProgramResult) -> Results:
    return Results(attrs={}, programs=list(programs))


def test_each_readout_gets_its_averaged_iq_magnitude_and_phase():
    found = look(results(program(0, [[[1.0, 1.0], [3.0, 3.0]]], [[[0.0, -2.0]]])))
    (only,) = found.programs
    first, second = only.readouts
    assert (first.i, first.q, first.points) == (2.0, 2.0, 2)
    assert first.magnitude == pytest.approx(math.sqrt(8))
    assert first.phase_degrees == pytest.approx(45.0)
    assert (second.i, second.q) == (0.0, -2.0) and second.phase_degrees == pytest.approx(-90)


def test_a_sweeps_programs_of_one_shape_are_plotted_side_by_side():
    sweep = [program(k, [[float(k), 0.0]], [[0.0, float(k)]]) for k in range(4)]
    plot = look(results(*sweep)).plot
    assert plot is not None and plot.x_label == "program"
    assert [line.readout for line in plot.lines] == [0, 1]
    assert plot.lines[0].x == (0.0, 1.0, 2.0, 3.0)
    assert plot.lines[0].magnitude == (0.0, 1.0, 2.0, 3.0)
    assert plot.lines[1].phase_degrees[1:] == (90.0, 90.0, 90.0)


def test_one_program_with_a_sweep_inside_is_plotted_along_its_points():
    points = [[[k, -k] for k in range(5)]]  # one read, 5 sweep points
    plot = look(results(program(0, points))).plot
    assert plot is not None and plot.x_label == "point of program 0"
    assert plot.lines[0].x == (0.0, 1.0, 2.0, 3.0, 4.0)
    assert plot.lines[0].magnitude[2] == pytest.approx(math.hypot(2, 2))
    assert plot.lines[0].phase_degrees[2] == pytest.approx(-45.0)


def test_single_points_of_one_program_make_no_plot_only_numbers():
    found = look(results(program(0, [[1.0, 2.0]])))
    assert found.plot is None and found.programs[0].readouts[0].i == 1.0


def test_programs_of_different_shapes_are_not_drawn_across_and_the_note_says_so():
    found = look(results(program(0, [[1.0, 0.0]]), program(1, [[[1.0, 0.0], [2.0, 0.0]]])))
    assert any("do not share one shape" in note for note in found.notes)
    assert found.plot is not None and found.plot.x_label == "point of program 1"


def test_decimated_programs_are_read_from_their_traces():
    found = look(results(program(3, [[2.0, 0.0], [4.0, 0.0]], acqtype="decimated")))
    assert found.programs[0].acqtype == "decimated"
    assert found.programs[0].readouts[0].i == 3.0


def test_points_that_are_not_numbers_are_left_out_of_the_mean():
    found = look(results(program(0, [[[1.0, 1.0], [math.nan, 5.0]]])))
    readout = found.programs[0].readouts[0]
    assert (readout.i, readout.points) == (1.0, 1)
    empty = look(results(program(0, [[[math.nan, math.nan]]]))).programs[0].readouts[0]
    assert empty.points == 0 and math.isnan(empty.magnitude)


def test_a_program_without_averaged_data_shows_no_numbers_and_says_why():
    bare = ProgramResult(0, "accumulated", 0.1, raw=[np.zeros((4, 2))])
    found = look(results(bare))
    assert found.programs[0].readouts == () and found.plot is None
    assert any("no acquire() result" in note for note in found.notes)
    assert look(results(program(0, [1.0, 2.0, 3.0]))).programs[0].readouts == ()  # not IQ


def test_programs_beyond_the_cap_are_left_out_and_the_note_says_so():
    many = [program(k, [[1.0, float(k)]]) for k in range(quicklook.MAX_PROGRAMS + 5)]
    found = look(results(*many))
    assert len(found.programs) == quicklook.MAX_PROGRAMS
    assert f"first {quicklook.MAX_PROGRAMS} of {quicklook.MAX_PROGRAMS + 5}" in found.notes[0]


def test_points_beyond_the_cap_are_picked_evenly_first_and_last_kept():
    count = quicklook.MAX_POINTS * 3
    plot = look(results(program(0, [[[float(k), 0.0] for k in range(count)]]))).plot
    assert plot is not None
    xs = plot.lines[0].x
    assert len(xs) <= quicklook.MAX_POINTS and xs[0] == 0 and xs[-1] == count - 1
    assert list(xs) == sorted(set(xs))


def test_readouts_beyond_the_cap_are_left_out():
    found = look(results(program(0, *[[[1.0, 0.0]]] * (quicklook.MAX_READOUTS + 1))))
    assert len(found.programs[0].readouts) == quicklook.MAX_READOUTS
    assert any("first 8 readouts" in note for note in found.notes)


def test_panels_put_every_point_inside_its_box():
    sweep = [program(k, [[float(k), 1.0]]) for k in range(5)]
    drawn = panels(look(results(*sweep)).plot)
    assert [p.title for p in drawn] == ["Magnitude", "Phase (degrees)"]
    for panel in drawn:
        for _, points in panel.polylines:
            for pair in points.split():
                x, y = map(float, pair.split(","))
                assert quicklook.MARGIN_LEFT <= x <= quicklook.WIDTH - quicklook.MARGIN_RIGHT
                assert panel.top <= y <= panel.top + quicklook.PANEL_HEIGHT


def test_a_flat_line_is_drawn_in_the_middle_not_divided_by_zero():
    sweep = [program(k, [[2.0, 0.0]]) for k in range(3)]
    magnitude = panels(look(results(*sweep)).plot)[0]
    assert magnitude.low < 2.0 < magnitude.high
    ys = {float(p.split(",")[1]) for p in magnitude.polylines[0][1].split()}
    assert len(ys) == 1


@pytest.mark.parametrize("low, high, expected", [
    (1999.86, 2000.23, ("1999.9", "2000.2")),  # "2000" at both ends with 4 digits
    (0.5, 12.25, ("0.5", "12.25")),
    (-126.13, -0.1234, ("-126.1", "-0.1234")),
    (1.0, 1.0, ("1", "1")),  # no digits tell equal ends apart: as they are
])
def test_axis_ends_get_the_digits_that_tell_them_apart(low, high, expected):
    assert quicklook.axis_labels(low, high) == expected
