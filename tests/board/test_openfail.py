"""A real board that does not open says what PYNQ said and which part of the installation
to look at (``executor.openfail.explain_open_failure``, pure), and the reason fits in the
heartbeat."""
from __future__ import annotations

import errno

import pytest

from executor.openfail import explain_open_failure
from supervisor.snapshot import MAX_REASON_CHARS

XRT = {"XILINX_XRT": "/usr", "BOARD": "ZCU216"}
GLOBAL_STATE = ("/usr/local/share/pynq-venv/lib/python3.10/site-packages/pynq/pl_server/"
                "global_pl_state_.json")


def no_module(name):
    return ModuleNotFoundError(f"No module named '{name}'", name=name)


@pytest.mark.parametrize("exc, environ, words", [
    (RuntimeError("No Devices Found"), {"BOARD": "ZCU216"},
     ["RuntimeError: No Devices Found", "XILINX_XRT is not set",
      "qick-supervisor install-service"]),
    (OSError(errno.EROFS, "Read-only file system", "/lib/firmware/qick_216.bin"), XRT,
     ["OSError: [Errno 30] Read-only file system: '/lib/firmware/qick_216.bin'",
      "read-only in the sandbox; add /lib/firmware to the unit's ReadWritePaths"]),
    (PermissionError(errno.EACCES, "Permission denied",
                     "/sys/class/fpga_manager/fpga0/firmware"), XRT,
     ["PermissionError", "add /sys/class/fpga_manager to the unit's ReadWritePaths"]),
    (OSError(errno.EROFS, "Read-only file system", GLOBAL_STATE), XRT,
     [GLOBAL_STATE, "add /usr/local/share/pynq-venv/lib/python3.10/site-packages/pynq to "
      "the unit's ReadWritePaths"]),
    # PYNQ/XRT re-raise some OSErrors as RuntimeError: the path is read from the text
    (RuntimeError("[Errno 30] Read-only file system: '/lib/firmware/x.bin'"), XRT,
     ["add /lib/firmware to the unit's ReadWritePaths"]),
    (PermissionError(errno.EPERM, "Operation not permitted", "/dev/dri/renderD128"), XRT,
     ["PermissionError", "the sandbox denies /dev/dri/renderD128",
      "DeviceAllow=char-drm rw"]),
    (PermissionError(errno.EACCES, "Permission denied", "/dev/uio4"), XRT,
     ["denies /dev/uio4", "DeviceAllow=char-uio rw"]),
    (PermissionError(errno.EACCES, "Permission denied", "/dev/mem"), XRT,
     ["denies /dev/mem", "DeviceAllow=/dev/mem rw"]),
    (no_module("pynq"), XRT,
     ["ModuleNotFoundError: No module named 'pynq'", "not PYNQ's venv",
      "install qick-queue into it", "install-service"]),
    (no_module("pynq.pl_server"), {},
     ["not PYNQ's venv"]),
    (ImportError("cannot import name 'QickSoc' from 'qick'", name="qick"), {},
     ["QickSoc only on the RFSoC's ARM CPU", "set `[executor] board = simulated`"]),
    (ValueError("bitstream does not match the hwh"), XRT,
     ["ValueError: bitstream does not match the hwh",
      "then run `qick-supervisor check --as-service`"]),
])
def test_each_failure_names_what_pynq_said_and_what_to_look_at(exc, environ, words):
    text = explain_open_failure(exc, environ)
    for w in words:
        assert w in text, text


def test_a_denied_path_outside_what_pynq_needs_is_named_without_blaming_the_sandbox_rule():
    text = explain_open_failure(PermissionError(errno.EACCES, "Permission denied",
                                                "/srv/other"), XRT)
    assert "/srv/other is out of the service's reach" in text
    assert "check --as-service" in text


def test_an_unrelated_error_with_xrt_missing_points_at_the_environment():
    text = explain_open_failure(KeyError("BOARD"), {})
    assert text.startswith("KeyError: 'BOARD'") and "XILINX_XRT is not set" in text


@pytest.mark.parametrize("exc", [
    RuntimeError("No Devices Found"), no_module("pynq"),
    OSError(errno.EROFS, "Read-only file system", "/lib/firmware/qick_216.bin"),
    PermissionError(errno.EACCES, "Permission denied", "/dev/dri/renderD128")])
def test_the_reason_as_the_heartbeat_carries_it_is_not_cut(exc):
    # executor/main.py's farewell and the daemon's exit reason (supervisor/daemon.py)
    reason = ("executor: the executor could not open the board (see its log): cannot open "
              f"the real board (qick): {explain_open_failure(exc, {})}")
    assert len(reason) <= MAX_REASON_CHARS, (len(reason), reason)
