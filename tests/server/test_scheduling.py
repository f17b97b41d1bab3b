"""The facility's scheduling policy (queueservice.scheduling): tables for each rule, its
message and until; hypothesis properties for what must never happen. No processes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queueservice import policy
from queueservice.scheduling import (DAY_MS, HALF_LIFE_MS, RULES, WEEK_MS, Booking,
                                     Calendar, Candidate, Prices, Session, decayed_usage,
                                     pick, unroll_weekly)

NOW = 1_000_000
OPEN = Calendar()
PRICES = Prices(per_used_second=2.0, per_reserved_second=3.0)
RICH = {"a": 1e9, "b": 1e9, "c": 1e9}


def cand(work_id, team="a", priority="MEDIUM", seq=0, est=10.0, max_seconds=None,
         reservation=False, session_id=None, user="u1"):
    return Candidate(work_id, team, user, priority, seq, est, max_seconds, reservation,
                     session_id)


def slot(team, start, end, ref="r1"):
    return Booking("reservation", start, end, team, ref)


def maint(start, end, reason="cryostat warm-up"):
    return Booking("maintenance", start, end, None, reason)


def run(candidates, calendar=OPEN, session=None, balances=RICH, usage=None,
        accounting=True, now=NOW):
    return pick(now, calendar, session, candidates, balances, usage or {}, PRICES,
                accounting=accounting)


# -- tables: one rule each ------------------------------------------------------------------
def test_maintenance_now_takes_no_work_until_its_end():
    d = run([cand("w1"), cand("w2", reservation=True)],
            Calendar(bookings=(maint(NOW - 5, NOW + 60_000), slot("a", NOW, NOW + 1))))
    assert d.chosen is None
    for skip in d.skipped.values():
        assert (skip.rule, skip.until) == ("maintenance", NOW + 60_000)
        assert "cryostat warm-up" in skip.message


def test_a_run_that_would_reach_maintenance_waits_a_shorter_one_runs():
    cal = Calendar(bookings=(maint(NOW + 10_000, NOW + 20_000),))
    d = run([cand("long", est=11.0, seq=1), cand("short", est=9.0, seq=2)], cal)
    assert d.chosen.work_id == "short"
    assert d.skipped["long"].rule == "maintenance"
    assert d.skipped["long"].until == NOW + 20_000
    assert "before this run could end" in d.skipped["long"].message


def test_max_seconds_not_the_estimate_bounds_the_run_against_bookings():
    cal = Calendar(bookings=(slot("b", NOW + 10_000, NOW + 20_000),))
    d = run([cand("capped", est=5.0, max_seconds=30.0)], cal)
    assert d.chosen is None
    assert (d.skipped["capped"].rule, d.skipped["capped"].until) == ("reserved", NOW + 20_000)


def test_run_ending_exactly_when_a_booking_starts_is_allowed():
    """Half-open intervals: [now, now+10 s) does not touch a slot starting at now+10 s."""
    cal = Calendar(bookings=(slot("b", NOW + 10_000, NOW + 20_000),))
    assert run([cand("w", est=10.0)], cal).chosen.work_id == "w"


def test_another_teams_slot_runs_only_that_teams_timeslot_work():
    cal = Calendar(bookings=(slot("b", NOW - 1_000, NOW + 50_000, ref="slot-b"),))
    d = run([cand("a-shared", "a", priority="HIGH"), cand("a-slot", "a", reservation=True),
             cand("b-shared", "b", priority="HIGH"), cand("b-slot", "b", reservation=True)],
            cal)
    assert d.chosen.work_id == "b-slot"
    for work_id in ("a-shared", "a-slot"):
        assert d.skipped[work_id].rule == "reserved"
        assert d.skipped[work_id].until == NOW + 50_000
        assert "reserved by another team now" in d.skipped[work_id].message
    # the team's own shared work does not run in its paid slot: it is told how to
    assert d.skipped["b-shared"].rule == "reserved"
    assert "--timeslot" in d.skipped["b-shared"].message


def test_timeslot_work_in_its_slot_may_not_run_into_the_next_teams_slot():
    cal = Calendar(bookings=(slot("a", NOW - 1_000, NOW + 10_000, "ra"),
                             slot("b", NOW + 10_000, NOW + 30_000, "rb")))
    d = run([cand("long", "a", est=12.0, reservation=True, seq=1),
             cand("fits", "a", est=10.0, reservation=True, seq=2)], cal)
    assert d.chosen.work_id == "fits"
    assert (d.skipped["long"].rule, d.skipped["long"].until) == ("reserved", NOW + 30_000)
    assert "before this run could end" in d.skipped["long"].message


def test_timeslot_work_without_a_slot_says_to_book_one():
    d = run([cand("w", reservation=True)])
    assert d.chosen is None
    skip = d.skipped["w"]
    assert (skip.rule, skip.until) == ("needs_timeslot", None)
    assert "no booked timeslot" in skip.message and "userclient reserve" in skip.message


def test_timeslot_work_waits_for_its_teams_next_slot_not_another_teams():
    cal = Calendar(bookings=(slot("b", NOW + 1_000, NOW + 2_000, "rb"),
                             slot("a", NOW + 5_000, NOW + 9_000, "ra"),
                             slot("a", NOW + 20_000, NOW + 29_000, "ra2")))
    d = run([cand("w", "a", reservation=True, est=0.5)], cal)
    assert (d.skipped["w"].rule, d.skipped["w"].until) == ("needs_timeslot", NOW + 5_000)
    assert "next timeslot" in d.skipped["w"].message


def test_timeslot_work_ignores_windows_inside_its_slot():
    cal = Calendar(windows=((NOW + 100_000, NOW + 200_000),),
                   bookings=(slot("a", NOW, NOW + 60_000),))
    assert run([cand("w", reservation=True)], cal).chosen.work_id == "w"


def test_shared_work_outside_windows_waits_for_the_next_window():
    cal = Calendar(windows=((NOW - 9_000, NOW - 1_000), (NOW + 40_000, NOW + 80_000),
                            (NOW + 10_000, NOW + 20_000)))
    d = run([cand("w")], cal)
    assert d.chosen is None
    assert (d.skipped["w"].rule, d.skipped["w"].until) == ("outside_window", NOW + 10_000)
    assert "next pay-as-you-go window" in d.skipped["w"].message
    ended = run([cand("w")], Calendar(windows=((NOW - 9_000, NOW),)))
    assert (ended.skipped["w"].rule, ended.skipped["w"].until) == ("outside_window", None)


def test_shared_work_starts_inside_a_window_and_may_end_after_it():
    cal = Calendar(windows=((NOW - 1_000, NOW + 1_000),))
    assert run([cand("w", est=60.0)], cal).chosen.work_id == "w"


def test_a_started_session_holds_the_device_for_its_own_work():
    s = Session("s1", "u9", "b", NOW - 5_000, NOW + 60_000, NOW + 30_000)
    d = run([cand("other", "a", priority="HIGH", seq=1),
             cand("mine", "b", priority="LOW", seq=9, session_id="s1", user="u9")], session=s)
    assert d.chosen.work_id == "mine"
    skip = d.skipped["other"]
    assert (skip.rule, skip.until) == ("session", NOW + 30_000)
    assert "session s1" in skip.message and "only its work runs" in skip.message
    assert "u9" not in skip.message   # who holds it is not told to others


def test_session_work_comes_first_even_against_higher_priority_when_both_could_run():
    """Only one session holds a device; its work goes before anyone's (none else runs)."""
    s = Session("s1", "u9", "b", NOW - 5_000, NOW + 60_000, NOW + 30_000)
    d = run([cand("mine-2", "b", seq=2, session_id="s1"),
             cand("mine-1", "b", seq=1, session_id="s1")], session=s)
    assert d.chosen.work_id == "mine-1"
    assert d.skipped["mine-2"].rule == "behind"


@pytest.mark.parametrize("session", [
    Session("s1", "u9", "b", None, NOW + 60_000, NOW + 30_000),        # not started yet
    Session("s1", "u9", "b", NOW - 90_000, NOW, NOW + 30_000),         # max time reached
    Session("s1", "u9", "b", NOW - 90_000, NOW + 60_000, NOW - 1),     # idle too long
], ids=["not-started", "max-time", "idle"])
def test_a_session_not_started_or_over_holds_nothing(session):
    d = run([cand("other", "a", priority="HIGH", seq=1),
             cand("mine", "b", priority="LOW", seq=0, session_id="s1")], session=session)
    assert d.chosen.work_id == "other"
    assert d.skipped["mine"].rule == "behind"


def test_a_session_holds_nothing_during_another_teams_slot():
    s = Session("s1", "u9", "b", NOW - 5_000, NOW + 60_000, NOW + 30_000)
    cal = Calendar(bookings=(slot("a", NOW - 1, NOW + 10_000),))
    d = run([cand("a-slot", "a", reservation=True), cand("mine", "b", session_id="s1")],
            cal, session=s)
    assert d.chosen.work_id == "a-slot"
    assert d.skipped["mine"].rule == "reserved"


def test_credits_refuse_work_the_balance_cannot_cover_with_the_numbers():
    d = run([cand("poor", "a", est=10.0, seq=1), cand("ok", "b", est=10.0, seq=2)],
            balances={"a": 19.0, "b": 20.0})
    assert d.chosen.work_id == "ok"
    skip = d.skipped["poor"]
    assert (skip.rule, skip.until) == ("credits", None)
    assert "19.0" in skip.message and "10.0 s x 2 = 20.0" in skip.message
    assert "request credits" in skip.message


def test_credits_check_the_estimate_capped_by_max_seconds_and_unlisted_team_has_none():
    d = run([cand("capped", "a", est=100.0, max_seconds=5.0), cand("nobody", "c", est=0.5)],
            balances={"a": 10.0})
    assert d.chosen.work_id == "capped"
    assert d.skipped["nobody"].rule == "credits"


def test_work_of_unknown_cost_runs_while_its_team_has_anything_left_or_at_its_cap():
    def unknown(work_id, team, max_seconds=None):
        return Candidate(work_id, team, "u1", "MEDIUM", 0, 60.0, max_seconds,
                         estimate_known=False)
    d = run([unknown("some", "a"), unknown("none", "b"), unknown("capped", "c", 3.0)],
            balances={"a": 0.5, "b": 0.0, "c": 5.0})
    assert d.chosen.work_id in {"some", "capped"}
    skip = d.skipped["none"]
    assert skip.rule == "credits" and "not known in advance" in skip.message
    d = run([unknown("capped", "c", 3.0)], balances={"c": 5.0})  # 3 s x 2 = 6 > 5
    assert d.chosen is None and "3.0 s x 2 = 6.0" in d.skipped["capped"].message


def test_session_work_is_not_checked_for_credits_its_session_is_charged():
    held = Session("s1", "u1", "a", NOW - 1000, NOW + 60_000, NOW + 60_000)
    d = run([cand("w", "a", session_id="s1")], session=held, balances={})
    assert d.chosen.work_id == "w"


def test_timeslot_work_is_not_checked_for_credits_its_slot_was_paid():
    cal = Calendar(bookings=(slot("a", NOW, NOW + 60_000),))
    assert run([cand("w", "a", reservation=True)], cal, balances={}).chosen.work_id == "w"


def test_priority_then_fair_share_then_place_in_line():
    d = run([cand("a-low", "a", "LOW", seq=0), cand("a-med", "a", seq=1),
             cand("b-med", "b", seq=5), cand("b-med2", "b", seq=6)],
            usage={"a": 500.0, "b": 20.0})
    assert d.chosen.work_id == "b-med"
    assert d.skipped["b-med2"].message == "behind b-med: earlier in line"
    assert d.skipped["a-med"].message == ("behind b-med2: fair share: team b's recent use "
                                          "20.0 s is below team a's 500.0 s")
    assert d.skipped["a-low"].message == "behind a-med: higher priority (MEDIUM before LOW)"
    assert {s.rule for s in d.skipped.values()} == {"behind"}


def test_without_accounting_the_order_is_todays_queue_order_and_credits_are_not_asked():
    cands = [cand("a-low", "a", "LOW", seq=0), cand("b-high", "b", "HIGH", seq=7),
             cand("a-med", "a", seq=3), cand("c-med", "c", seq=2), cand("c-high", "c", "HIGH",
                                                                       seq=9)]
    rows = [{"work_id": c.work_id, "status": "READY", "priority": c.priority,
             "ready_seq": c.ready_seq} for c in cands]
    expected = [r["work_id"] for r in policy.queue_order(rows)]
    d = run(cands, balances={}, usage={"b": 1e6, "c": 0.0}, accounting=False)
    assert d.chosen.work_id == expected[0] == "b-high"
    # each waits behind the one just before it in today's order
    for ahead, behind in zip(expected, expected[1:]):
        assert d.skipped[behind].message.startswith(f"behind {ahead}:")


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="appears twice"):
        run([cand("w"), cand("w")])
    with pytest.raises(ValueError, match="not after start"):
        maint(5, 5)
    with pytest.raises(ValueError, match="kind"):
        Booking("holiday", 0, 1, None, "x")
    with pytest.raises(ValueError, match="maintenance has none"):
        Booking("maintenance", 0, 1, "a", "x")
    with pytest.raises(ValueError, match="half life"):
        decayed_usage([], NOW, 0)


def test_decayed_usage_halves_every_half_life():
    events = [(NOW, 100.0), (NOW - HALF_LIFE_MS, 100.0), (NOW - 2 * HALF_LIFE_MS, 100.0),
              (NOW + 5, 10.0)]
    assert decayed_usage(events, NOW) == pytest.approx(100 + 50 + 25 + 10)
    assert decayed_usage([], NOW) == 0.0
    assert HALF_LIFE_MS == 7 * 86400 * 1000


# -- properties ---------------------------------------------------------------------------
TEAMS = ("a", "b", "c")
#: every time is drawn as an offset from now (ms), so that bookings, windows and sessions
#: often cover now or start within a run's reach
OFFSET = st.integers(-60_000, 120_000)
#: a fixed seed and no example database: every run checks the same examples
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)


@st.composite
def bookings(draw, now):
    kind = draw(st.sampled_from(("reservation",) * 3 + ("maintenance",)))
    start = now + draw(st.integers(-40_000, 0) | OFFSET)   # often covering now
    end = start + draw(st.integers(1, 40_000))
    team = draw(st.sampled_from(TEAMS)) if kind == "reservation" else None
    return Booking(kind, start, end, team, f"b{draw(st.integers(0, 999))}")


@st.composite
def candidates(draw):
    n = draw(st.integers(1, 8))
    out = []
    for i in range(n):
        out.append(Candidate(
            f"w{i}", draw(st.sampled_from(TEAMS)), draw(st.sampled_from(("u1", "u2"))),
            draw(st.sampled_from(("HIGH", "MEDIUM", "LOW"))), draw(st.integers(0, 20)),
            draw(st.floats(0, 30, allow_nan=False)),
            draw(st.sampled_from((None, None, 1.0)) | st.floats(0, 60, allow_nan=False)),
            draw(st.booleans()), draw(st.sampled_from((None, "s1", "s2")))))
    return out


@st.composite
def scenarios(draw):
    now = draw(st.integers(0, 10**12))
    window = st.tuples(OFFSET, st.integers(1, 50_000)).map(
        lambda t: (now + t[0], now + t[0] + t[1]))
    windows = draw(st.sampled_from((None, None)) | st.lists(window, max_size=3).map(tuple))
    cal = Calendar(windows, tuple(draw(st.lists(bookings(now), max_size=3))))
    at = OFFSET.map(lambda o: now + o)
    session = draw(st.none() | st.builds(
        Session, st.sampled_from(("s1", "s2")), st.sampled_from(("u1", "u2")),
        st.sampled_from(TEAMS), st.none() | st.integers(-60_000, 0).map(lambda o: now + o),
        at, at))
    balances = draw(st.dictionaries(st.sampled_from(TEAMS), st.floats(-10, 100,
                                                                      allow_nan=False)))
    usage = draw(st.dictionaries(st.sampled_from(TEAMS), st.floats(0, 1e4, allow_nan=False)))
    return dict(now=now, calendar=cal, session=session, candidates=draw(candidates()),
                balances=balances, usage=usage, prices=PRICES,
                accounting=draw(st.booleans()))


def _overlaps(booking, start, end):
    return booking.start < end and start < booking.end


@PROPERTY
@given(scenarios())
def test_property_no_pick_in_maintenance_or_over_another_teams_slot(sc):
    chosen = pick(**sc).chosen
    if chosen is None:
        return
    start, end = sc["now"], sc["now"] + chosen.run_ms()
    for b in sc["calendar"].bookings:
        if _overlaps(b, start, end):
            assert b.kind == "reservation" and b.team_id == chosen.team_id
            assert chosen.reservation


@PROPERTY
@given(scenarios())
def test_property_a_pick_inside_a_reservation_is_the_reserving_teams(sc):
    chosen = pick(**sc).chosen
    now = sc["now"]
    for b in sc["calendar"].bookings:
        if chosen is not None and b.start <= now < b.end:
            assert b.kind == "reservation" and chosen.team_id == b.team_id


@PROPERTY
@given(scenarios())
def test_property_with_accounting_the_balance_covers_shared_work(sc):
    """Shared work: neither timeslot work (its slot was paid) nor session work (its
    session is charged for the time it holds the device)."""
    chosen = pick(**sc).chosen
    if (sc["accounting"] and chosen is not None and not chosen.reservation
            and chosen.session_id is None):
        balance = sc["balances"].get(chosen.team_id, 0.0)
        assert balance >= chosen.charged_seconds() * PRICES.per_used_second
        assert chosen.charged_seconds() <= chosen.estimated_seconds


@PROPERTY
@given(scenarios())
def test_property_every_candidate_not_chosen_has_exactly_one_skip(sc):
    d = pick(**sc)
    ids = {c.work_id for c in sc["candidates"]}
    chosen = {d.chosen.work_id} if d.chosen else set()
    assert set(d.skipped) == ids - chosen
    assert all(s.rule in RULES and s.message for s in d.skipped.values())
    # something runnable is always picked: "behind" never stands alone
    if d.chosen is None:
        assert "behind" not in {s.rule for s in d.skipped.values()}


@PROPERTY
@given(scenarios(), st.randoms(use_true_random=False))
def test_property_pick_is_deterministic_and_ignores_input_order(sc, rnd):
    first = pick(**sc)
    assert pick(**sc) == first
    shuffled = list(sc["candidates"])
    rnd.shuffle(shuffled)
    assert pick(**dict(sc, candidates=shuffled)) == first


@PROPERTY
@given(scenarios())
def test_property_while_a_session_holds_the_device_only_its_work_runs(sc):
    chosen, session, now = pick(**sc).chosen, sc["session"], sc["now"]
    in_booking = any(b.start <= now < b.end for b in sc["calendar"].bookings)
    if chosen is not None and session is not None and session.holds(now) and not in_booking:
        assert chosen.session_id == session.session_id


# -- weekly windows ----------------------------------------------------------------------
MONDAY = 1_764_547_200_000  # 2025-12-01 00:00 UTC, a Monday
H = 3_600_000


def test_weekly_windows_unroll_on_their_days_in_utc():
    nights = [(0, 22 * 60, 1440), (1, 0, 6 * 60)]  # Monday 22:00 -> Tuesday 06:00
    assert unroll_weekly(nights, MONDAY, MONDAY + 7 * DAY_MS) == ((MONDAY + 22 * H,
                                                                  MONDAY + 30 * H),)
    assert unroll_weekly(nights, MONDAY + 23 * H, MONDAY + 24 * H) == ((MONDAY + 22 * H,
                                                                       MONDAY + 30 * H),)


def test_weekly_windows_repeat_every_week_and_only_inside_the_range():
    sunday = [(6, 0, 60)]
    got = unroll_weekly(sunday, MONDAY, MONDAY + 14 * DAY_MS)
    assert got == ((MONDAY + 6 * DAY_MS, MONDAY + 6 * DAY_MS + H),
                   (MONDAY + 13 * DAY_MS, MONDAY + 13 * DAY_MS + H))
    assert unroll_weekly(sunday, MONDAY, MONDAY + 6 * DAY_MS) == ()


@pytest.mark.parametrize("rule", [(7, 0, 60), (0, 60, 60), (0, -1, 60), (0, 0, 1441)])
def test_weekly_window_out_of_range_is_refused(rule):
    with pytest.raises(ValueError, match="weekly window"):
        unroll_weekly([rule], MONDAY, MONDAY + DAY_MS)


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1439), st.integers(1, 1440))
                .filter(lambda r: r[1] < r[2]), max_size=5),
       st.integers(-10 * WEEK_MS, 10 * WEEK_MS), st.integers(1, 3 * WEEK_MS))
@settings(max_examples=150, deadline=None)
def test_property_unrolled_windows_are_sorted_disjoint_and_match_the_rules(rules, start, span):
    end = start + span
    got = unroll_weekly(rules, start, end)
    assert all(s < e for s, e in got)
    assert all(a[1] < b[0] for a, b in zip(got, got[1:]))  # merged: a gap between any two
    for t in (start, (start + end) // 2, end - 1):
        minute = (t - MONDAY) % WEEK_MS // 60_000
        inside_rule = any(d * 1440 + f <= minute < d * 1440 + e for d, f, e in rules)
        assert inside_rule == any(s <= t < e for s, e in got)
