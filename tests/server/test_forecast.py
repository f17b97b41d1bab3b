"""The queue forecast (``scheduling.forecast``): the pick rules played forward for
QueuePosition and EstimatedStartAt. Tables for each thing it must account for (each run's
own length, maintenance, windows, slots, a holding session, credits, the device's current
work) and hypothesis properties for what must never happen. No processes."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from queueservice.scheduling import (Booking, Calendar, Candidate, Prices, Session,
                                     forecast, pick)

NOW = 10_000_000
S = 1000  # ms
OPEN = Calendar()
PRICES = Prices(per_used_second=1.0, per_reserved_second=1.0)
RICH = {"a": 1e9, "b": 1e9}


def cand(work_id, team="a", seq=0, est=10.0, priority="MEDIUM", max_seconds=None,
         reservation=False, session_id=None):
    return Candidate(work_id, team, "u1", priority, seq, est, max_seconds, reservation,
                     session_id)


def maint(start, end):
    return Booking("maintenance", start, end, None, "cryostat")


def slot(team, start, end, ref="r1"):
    return Booking("reservation", start, end, team, ref)


def play(cands, calendar=OPEN, session=None, balances=RICH, usage=None, accounting=True,
         free_at=None):
    return forecast(NOW, calendar, session, cands, balances, usage or {}, PRICES,
                    accounting=accounting, free_at=free_at)


def test_each_run_takes_its_own_estimate():
    f = play([cand("x", seq=1, est=10), cand("y", seq=2, est=20), cand("z", seq=3, est=5)])
    assert f.starts == {"x": NOW, "y": NOW + 10 * S, "z": NOW + 30 * S}
    assert [f.position(w) for w in "xyz"] == [1, 2, 3]


def test_the_device_busy_with_its_current_work_starts_the_queue_later():
    f = play([cand("x")], free_at=NOW + 7 * S)
    assert f.starts == {"x": NOW + 7 * S}


def test_a_run_that_would_reach_maintenance_waits_past_it_while_a_short_one_fits():
    cal = Calendar(bookings=(maint(NOW + 5 * S, NOW + 60 * S),))
    f = play([cand("long", seq=1, est=10), cand("short", seq=2, est=2)], calendar=cal)
    assert f.starts == {"short": NOW, "long": NOW + 60 * S}
    assert f.order == ("short", "long") and f.position("long") == 2


def test_shared_work_waits_for_the_next_window():
    cal = Calendar(windows=((NOW + 100 * S, NOW + 200 * S),))
    assert play([cand("x")], calendar=cal).starts == {"x": NOW + 100 * S}


def test_timeslot_work_starts_in_its_slot_and_other_teams_work_around_it():
    cal = Calendar(bookings=(slot("b", NOW + 20 * S, NOW + 40 * S),))
    f = play([cand("ours", team="b", seq=1, est=10, reservation=True),
              cand("theirs", team="a", seq=2, est=15),
              cand("after", team="a", seq=3, est=15)], calendar=cal)
    assert f.starts["ours"] == NOW + 20 * S
    assert f.starts["theirs"] == NOW          # ends at +15 s, before the slot
    assert f.starts["after"] == NOW + 40 * S  # would reach into the slot: after it


def test_a_holding_session_delays_everyone_else_until_its_hold_ends():
    held = Session("s1", "u2", "b", NOW - S, ends_at=NOW + 30 * S, idle_until=NOW + 50 * S)
    f = play([cand("mine", team="b", seq=2, session_id="s1"), cand("other", seq=1)],
             session=held)
    assert f.starts == {"mine": NOW, "other": NOW + 30 * S}


def test_work_its_team_cannot_pay_for_has_no_start():
    f = play([cand("x", seq=1, est=10), cand("y", seq=2, est=10)], balances={"a": 15.0})
    assert f.starts == {"x": NOW} and f.position("y") is None


def test_timeslot_work_without_a_slot_has_no_start():
    assert play([cand("x", reservation=True)]).starts == {}


def test_the_forecast_is_bounded_in_steps():
    many = [cand(f"w{i}", seq=i, est=1) for i in range(50)]
    f = forecast(NOW, OPEN, None, many, RICH, {}, PRICES, accounting=True, max_steps=10)
    assert len(f.starts) == 10 and set(f.order) == {f"w{i}" for i in range(10)}


# -- properties -----------------------------------------------------------------------------
@st.composite
def worlds(draw):
    n = draw(st.integers(1, 8))
    cands = [cand(f"w{i}", team=draw(st.sampled_from("ab")), seq=i,
                  est=draw(st.floats(0.5, 40)),
                  max_seconds=draw(st.none() | st.floats(1, 60)),
                  reservation=draw(st.booleans()),
                  priority=draw(st.sampled_from(["HIGH", "MEDIUM", "LOW"])))
             for i in range(n)]
    bookings, t = [], NOW - 20 * S
    for _ in range(draw(st.integers(0, 4))):
        t += draw(st.integers(0, 60)) * S
        length = draw(st.integers(1, 60)) * S
        team = draw(st.sampled_from([None, "a", "b"]))
        bookings.append(maint(t, t + length) if team is None else slot(team, t, t + length,
                                                                       f"r{t}"))
        t += length
    windows = draw(st.none() | st.just(((NOW, NOW + 30 * S), (NOW + 90 * S, NOW + 400 * S))))
    balances = {"a": draw(st.floats(0, 200)), "b": draw(st.floats(0, 200))}
    return cands, Calendar(windows, tuple(bookings)), balances


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_no_forecast_run_overlaps_maintenance_or_another_run(world):
    cands, cal, balances = world
    f = play(cands, calendar=cal, balances=balances)
    by_id = {c.work_id: c for c in cands}
    runs = sorted((f.starts[w], f.starts[w] + max(1, round(by_id[w].charged_seconds() * S)))
                  for w in f.order)
    for (s1, e1), (s2, _e2) in zip(runs, runs[1:]):
        assert e1 <= s2 + 1, runs  # one at a time (rounding up to a millisecond)
    for w in f.order:
        start, c = f.starts[w], by_id[w]
        end = start + c.run_ms()
        for b in cal.bookings:
            if b.kind == "maintenance" or not (c.reservation and b.team_id == c.team_id):
                assert end <= b.start or start >= b.end, (w, start, end, b)
        if c.reservation:  # timeslot work starts inside its team's slot
            assert any(b.team_id == c.team_id and b.start <= start < b.end
                       for b in cal.bookings), (w, start)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_the_forecast_never_spends_more_than_a_team_has(world):
    cands, cal, balances = world
    f = play(cands, calendar=cal, balances=balances)
    spent = {"a": 0.0, "b": 0.0}
    for w in f.order:
        c = next(c for c in cands if c.work_id == w)
        if not c.reservation:
            spent[c.team_id] += c.charged_seconds() * PRICES.per_used_second
    assert all(spent[t] <= balances[t] + 1e-6 for t in spent), (spent, balances)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_the_forecast_starts_with_what_pick_hands_out_now(world):
    cands, cal, balances = world
    chosen = pick(NOW, cal, None, cands, balances, {}, PRICES, accounting=True).chosen
    f = play(cands, calendar=cal, balances=balances)
    now_starts = [w for w in f.order if f.starts[w] == NOW]
    assert now_starts == ([chosen.work_id] if chosen else []), (chosen, f)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 8), st.floats(0.5, 40), st.booleans(), worlds())
def test_equal_work_starts_in_its_place_in_line(n, est, reservation, world):
    """Workloads alike but for their place in line start in that order, whatever the
    calendar."""
    _cands, cal, _balances = world
    alike = [cand(f"w{i}", team="a", seq=i, est=est, reservation=reservation)
             for i in range(n)]
    f = play(alike, calendar=cal)
    starts = [f.starts[f"w{i}"] for i in range(n) if f"w{i}" in f.starts]
    assert starts == sorted(starts)
    known = [f"w{i}" in f.starts for i in range(n)]
    assert known == sorted(known, reverse=True)  # no start after one without
