"""RunLimits: the run's limits travel typed; the executor refuses what it does not know."""
import pytest

from boardcore.errors import BoardConfigError, BusError, LimitsError
from boardcore.limits import RunLimits
from boardcore.settings import BoardSettings, load_settings

pytestmark = pytest.mark.device310

GOOD = {"deadline_seconds": 60.0, "max_workload_bytes": 2**20, "max_result_bytes": 2**30}


def test_limits_survive_the_bus_unchanged():
    limits = RunLimits(**GOOD)
    assert RunLimits.from_message(limits.to_message()) == limits
    assert limits.to_message() == GOOD


def test_settings_build_the_run_limits():
    s = BoardSettings(deadline_seconds=90, max_workload_mb=3, max_result_mb=5)
    assert s.limits() == RunLimits(deadline_seconds=90, max_workload_bytes=3 * 2**20,
                                   max_result_bytes=5 * 2**20)


def test_an_unknown_key_is_refused_not_dropped():
    with pytest.raises(LimitsError, match=r"unknown keys max_programs \(known: deadline_seconds,"
                                          r" max_workload_bytes, max_result_bytes, "
                                          r"max_seconds\); the supervisor and the executor "
                                          r"are from different"):
        RunLimits.from_message(dict(GOOD, max_programs=10))


def test_a_missing_key_is_refused():
    with pytest.raises(LimitsError, match="lack deadline_seconds; "):
        RunLimits.from_message({k: v for k, v in GOOD.items() if k != "deadline_seconds"})


@pytest.mark.parametrize("key,value,words", [
    ("deadline_seconds", "60", "must be a positive number"),
    ("deadline_seconds", True, "must be a positive number"),
    ("deadline_seconds", 0, "must be a positive number"),
    ("deadline_seconds", float("nan"), "must be a positive number"),
    ("max_result_bytes", 1.5, "must be a positive integer"),
    ("max_workload_bytes", -1, "must be a positive integer"),
])
def test_an_ill_typed_value_is_refused(key, value, words):
    with pytest.raises(LimitsError, match=f"the run's limit {key} = .* is not valid: it {words}"):
        RunLimits.from_message(dict(GOOD, **{key: value}))


def test_limits_that_are_not_an_object_are_refused():
    with pytest.raises(LimitsError, match="must be an object of deadline_seconds"):
        RunLimits.from_message(None)


def test_a_limits_error_is_a_bus_error():
    assert issubclass(LimitsError, BusError)


def test_a_deadline_that_is_not_positive_is_a_config_error(tmp_path):
    config = tmp_path / "config"
    config.write_text("[executor]\ndeadline_seconds = 0\n")
    with pytest.raises(BoardConfigError, match=r"\[executor\]: the run's limit deadline_seconds "
                                               r"= 0.0 is not valid: it must be a positive"):
        load_settings(config)


def test_the_deadline_margin_is_a_setting(tmp_path):
    config = tmp_path / "config"
    config.write_text("[executor]\ndeadline_margin_seconds = 7.5\n")
    assert load_settings(config).deadline_margin_seconds == 7.5
    config.write_text("[executor]\ndeadline_margin_seconds = -1\n")
    with pytest.raises(BoardConfigError, match="deadline_margin_seconds must be 0 or more"):
        load_settings(config)


def test_a_workload_s_cost_cap_travels_only_when_set_and_shortens_the_run():
    capped = RunLimits(**GOOD, max_seconds=12.5)
    assert capped.to_message() == dict(GOOD, max_seconds=12.5)
    assert RunLimits.from_message(capped.to_message()) == capped
    assert (capped.capped, capped.run_deadline) == (True, 12.5)
    longer = RunLimits(**GOOD, max_seconds=600)  # the board's deadline still holds
    assert (longer.capped, longer.run_deadline) == (False, 60.0)
    plain = RunLimits(**GOOD)
    assert (plain.max_seconds, plain.capped, plain.run_deadline) == (None, False, 60.0)
    assert "max_seconds" not in plain.to_message()


@pytest.mark.parametrize("value", [0, -1.0, "10", True])
def test_a_cost_cap_that_is_no_positive_number_is_refused(value):
    with pytest.raises(LimitsError, match="max_seconds"):
        RunLimits.from_message(dict(GOOD, max_seconds=value))
