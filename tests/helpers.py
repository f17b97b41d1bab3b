"""Small helpers shared by the tests: wait on a condition with a deadline, never sleep-and-hope."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> T:
    """Call ``predicate`` until it returns something truthy; return that. Fail at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError as exc:  # a predicate may assert to explain itself
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f": {last_error}" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


#: the real boards' soccfg dumps (reference data, see its README), in the shared folder beside
#: the repository (CI has it there), or where QICK_REFERENCE_SOCCFG says
REFERENCE_SOCCFG = Path(os.environ.get("QICK_REFERENCE_SOCCFG")
                        or Path(__file__).resolve().parents[1].parent / "shared" / "reference"
                        / "soccfg")


def reference_soccfg(name: str) -> Path:
    """The path of a reference soccfg. Missing: skipped on a developer's machine, a failure
    in CI (where a skip would hide the tests that need a real board's configuration)."""
    path = REFERENCE_SOCCFG / name
    if not path.exists():
        why = f"reference soccfg {path} not present (set QICK_REFERENCE_SOCCFG)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path
