from __future__ import annotations

import logging
from pathlib import Path

import pytest

from executor.boards import zcu216_v1, zcu216_v2
from executor.simboard import Resonator, SimulatedSoc
from tests.helpers import reference_soccfg


@pytest.fixture(autouse=True)
def _quiet_qick():
    # qick warns about its version on every config built from a dump of another version
    logging.getLogger("qick").setLevel(logging.ERROR)


@pytest.fixture
def soc2() -> SimulatedSoc:
    return SimulatedSoc(zcu216_v2(), seed=1, resonator=Resonator(f0=150.0))


@pytest.fixture
def soc1() -> SimulatedSoc:
    return SimulatedSoc(zcu216_v1(), seed=1, resonator=Resonator(f0=300.0))


def reference(name: str) -> Path:
    return reference_soccfg(name)
