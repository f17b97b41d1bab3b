"""The one backoff: exponential from base, capped, equal jitter in [ceiling/2, ceiling]."""
from __future__ import annotations

import dataclasses
import random

import pytest

from qickbase.backoff import Backoff, BackoffCounter

pytestmark = pytest.mark.device310  # the board runs this code on Python 3.10


def test_ceilings_double_from_the_base_up_to_the_cap_and_stay_there():
    policy = Backoff(base=0.5, cap=30.0)
    ceilings = [policy.ceiling(n) for n in range(12)]
    assert ceilings[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert all(c == 30.0 for c in ceilings[6:])
    assert ceilings == sorted(ceilings)  # never shorter for a later attempt


def test_every_delay_is_within_half_the_ceiling_and_the_ceiling():
    policy = Backoff(base=0.2, cap=7.0)
    rand = random.Random(20261201).random
    for attempt in range(15):
        ceiling = policy.ceiling(attempt)
        delays = [policy.delay(attempt, rand) for _ in range(2000)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempt
        # spread over the whole upper half, not bunched at one end
        assert min(delays) < ceiling * 0.52 and max(delays) > ceiling * 0.98
        assert len(set(delays)) > 1900


def test_the_draw_decides_where_in_the_upper_half():
    policy = Backoff(base=1.0, cap=5.0)
    assert [policy.delay(n, rand=lambda: 0.0) for n in range(5)] == [0.5, 1, 2, 2.5, 2.5]
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(5)] == [1, 2, 4, 5, 5]


def test_a_very_late_attempt_is_the_cap_not_an_overflow():
    assert Backoff(base=0.5, cap=30.0).delay(100_000, rand=lambda: 1.0) == 30.0


@pytest.mark.parametrize("base,cap", [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_base_that_is_not_positive_or_above_the_cap_is_refused(base, cap):
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base=base, cap=cap)


def test_a_negative_attempt_is_refused():
    with pytest.raises(ValueError, match="from 0"):
        Backoff().delay(-1)


def test_the_policy_is_a_value():
    policy = Backoff(base=1.0, cap=2.0)
    assert policy == Backoff(1.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.base = 3.0  # type: ignore[misc]


def test_a_counter_grows_with_each_failure_and_starts_over_after_a_success():
    counter = BackoffCounter(Backoff(base=0.5, cap=4.0), rand=lambda: 1.0)
    assert [counter.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert counter.attempt == 6
    counter.reset()
    assert counter.attempt == 0 and counter.next_delay() == 0.5


def test_a_counter_never_waits_less_than_half_the_base():
    """What the board's link needed a separate floor for: no retry right after a failure."""
    counter = BackoffCounter(Backoff(base=0.5, cap=30.0), rand=lambda: 0.0)
    assert counter.next_delay() == 0.25
