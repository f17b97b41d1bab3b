"""Fixtures of the drop-in tests: a home directory of one's own (``~/.config/qick.conf``,
``~/.cache/qick.tokens``), the reference soccfg of a real tProc v1 board, quiet qick."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.helpers import reference_soccfg

TPROC_V1 = "soccfg_houcklab_zcu216_tprocv1.json"


@pytest.fixture(autouse=True)
def _quiet_qick():
    # qick warns about its version on every config built from a dump of another version
    logging.getLogger("qick").setLevel(logging.ERROR)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh ``$HOME``: the original's config and token paths live under it."""
    path = tmp_path / "home"
    (path / ".config").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(path))
    for name in ("QICK_CONFIG", "QICK_CREDENTIALS", "QICK_API_KEY", "QICK_PASSWORD",
                 "QICK_TOKEN_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def tproc_v1_soccfg() -> Path:
    return reference_soccfg(TPROC_V1)
