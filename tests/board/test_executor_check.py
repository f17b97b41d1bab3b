"""``python -m executor.main --check``: the executor locks and opens the board as at its
start, then exits; its exit code says which step failed and stderr says why in one line
(``qick-supervisor check`` runs it instead of importing the executor)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from boardcore import exitcodes
from executor.sandbox import BoardLock

pytestmark = pytest.mark.device310
ROOT = Path(__file__).resolve().parents[2]


def check(config: Path, run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "executor.main", "--check", "--config",
                           str(config), "--run-dir", str(run_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def config(tmp_path: Path, executor: str) -> Path:
    path = tmp_path / "config"
    path.write_text(f"[executor]\n{executor}\n")
    return path


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_a_simulated_board_opens_and_says_its_name(tmp_path):
    done = check(config(tmp_path, "board = simulated"), tmp_path)
    assert done.returncode == exitcodes.OK, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "simulated zcu216-v2"
    assert not (tmp_path / "soccfg.json").exists()  # a check leaves nothing behind


def test_a_held_lock_is_board_busy_and_names_the_holder(tmp_path):
    with BoardLock(str(tmp_path / "board.lock")):
        done = check(config(tmp_path, "board = simulated"), tmp_path)
    assert done.returncode == exitcodes.BOARD_BUSY
    assert f"the board is in use by process {os.getpid()}" in one_line(done)
    assert check(config(tmp_path, "board = simulated"), tmp_path).returncode == exitcodes.OK


def test_a_board_that_does_not_open_says_why(tmp_path):
    done = check(config(tmp_path, "board = qick"), tmp_path)  # no RFSoC on this machine
    assert done.returncode == exitcodes.BOARD_OPEN_FAILED
    assert "cannot open the qick board" in one_line(done)


def test_a_bad_config_is_usage(tmp_path):
    done = check(config(tmp_path, "board = fpga"), tmp_path)
    assert done.returncode == exitcodes.USAGE
    assert "board = fpga is not known; use `qick`" in one_line(done)


def test_a_lock_file_that_cannot_be_made_is_sandbox_failed(tmp_path):
    done = check(config(tmp_path, f"board = simulated\nlock_file = {tmp_path}/no/board.lock"),
                 tmp_path)
    assert done.returncode == exitcodes.SANDBOX_FAILED
    assert "set [executor] lock_file to a writable path" in one_line(done)


def test_without_check_the_bus_is_required(tmp_path):
    done = subprocess.run([sys.executable, "-m", "executor.main", "--config",
                           str(config(tmp_path, "board = simulated"))], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == exitcodes.USAGE and "--bus is required" in done.stderr
