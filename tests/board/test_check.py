"""``qick-supervisor check``, the installation preflight, as a subprocess against the real
queue service with a simulated board: every check passing, and each failure's message."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from executor.sandbox import BoardLock
from tests.board.conftest import ROOT, BoardDaemon

NAMES = ["config", "credentials", "queue", "device", "board", "spool"]


def run_check(board: BoardDaemon, *extra: str, config: Path | None = None,
              credentials: Path | None = None):
    done = subprocess.run(
        [sys.executable, "-m", "supervisor.cli", "--config", str(config or board.config),
         "--credentials", str(credentials or board.credentials), "check", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines()
             if line.startswith(("ok ", "FAIL "))}
    return done, lines


@pytest.fixture
def board(tmp_path, queue_service):
    made = BoardDaemon(tmp_path / "b", queue_service)
    yield made
    made.cleanup()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_all_checks_pass_on_a_good_installation(board):
    done, lines = run_check(board)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(lines) == NAMES and all(line.startswith("ok ") for line in lines.values())
    assert f"the token is device {board.device_id}'s" in lines["device"]
    assert "simulated board" in lines["board"] and "writable" in lines["spool"]
    done, _ = run_check(board, "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"] is True
    assert [c["name"] for c in report["checks"]] == NAMES


def test_a_missing_config_key_names_the_file_and_key_and_skips_what_needs_it(board):
    _edit(board.config, f"id = {board.device_id}\n", "")
    done, lines = run_check(board)
    assert done.returncode == 1
    assert lines["config"].startswith("FAIL ")
    assert f"{board.config}: key `id` is missing in section [device]" in lines["config"]
    for name in ("credentials", "queue", "device", "board", "spool"):
        assert "skipped: fix the check above first" in lines[name]


def test_a_bad_daemon_setting_and_a_missing_config_file(board, tmp_path):
    _edit(board.config, "board = simulated", "board = fpga")
    _, lines = run_check(board)
    assert "board = fpga is not known; use `qick`" in lines["config"]
    done, lines = run_check(board, config=tmp_path / "nowhere")
    assert done.returncode == 1 and "no such config file" in lines["config"]


def test_credentials_readable_by_others_and_a_missing_secret(board):
    os.chmod(board.credentials, 0o644)
    done, lines = run_check(board)
    assert done.returncode == 1
    assert "mode 0644 lets other users read" in lines["credentials"]
    assert f"chmod 600 {board.credentials}" in lines["credentials"]
    assert "skipped" in lines["queue"] and lines["board"].startswith("ok ")
    os.chmod(board.credentials, 0o600)
    _edit(board.credentials, "secret = ", "secret_typo = ")
    _, lines = run_check(board)
    assert "key `secret` is missing in section [credentials]" in lines["credentials"]


def test_a_wrong_secret_and_an_unreachable_queue(board):
    secret = board.credentials.read_text().split("secret = ")[1].strip()
    _edit(board.credentials, "secret = ", "secret = x")
    done, lines = run_check(board)
    assert done.returncode == 1
    assert "refused this device's credentials" in lines["queue"]
    assert "check [credentials] id and secret" in lines["queue"]
    assert secret not in done.stdout + done.stderr  # no secret in the output
    assert "skipped" in lines["device"]
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    _edit(board.config, f"oauth_endpoint = {board.service.root}",
          f"oauth_endpoint = http://127.0.0.1:{port}")
    _, lines = run_check(board)
    assert "cannot reach the token endpoint" in lines["queue"]
    assert f"[service] oauth_endpoint = http://127.0.0.1:{port} right?" in lines["queue"]


def test_credentials_of_another_device(board, tmp_path, queue_service):
    other = board.admin.add_device("another-board")["DeviceId"]
    _edit(board.config, f"id = {board.device_id}", f"id = {other}")
    done, lines = run_check(board)
    assert done.returncode == 1
    assert f"are not device {other}'s (they are device {board.device_id}'s)" in lines["device"]
    assert "`userclient add-device`" in lines["device"]


def test_a_held_board_lock_names_the_holder(board):
    with BoardLock(str(board.run_dir / "board.lock")):
        done, lines = run_check(board)
    assert done.returncode == 1
    assert f"the board is in use by process {os.getpid()}" in lines["board"]
    assert lines["spool"].startswith("ok ")


def test_an_unwritable_spool_and_too_little_free_space(board, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _edit(board.config, f"spool = {board.spool}", f"spool = {blocker / 'spool'}")
    _, lines = run_check(board)
    assert f"cannot create the spool at {blocker / 'spool'}" in lines["spool"]
    assert "set [supervisor] spool to a writable folder" in lines["spool"]
    _edit(board.config, f"spool = {blocker / 'spool'}", f"spool = {board.spool}")
    _edit(board.config, "min_free_mb = 1", "min_free_mb = 999999999")
    done, lines = run_check(board)
    assert done.returncode == 1
    assert "MiB free in" in lines["spool"] and "lower [supervisor] min_free_mb" in lines["spool"]


def test_only_board_runs_the_board_step_and_what_it_needs(board):
    """``check --only board`` is what ``check --as-service`` runs inside the unit's sandbox."""
    done, lines = run_check(board, "--only", "board")
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(lines) == ["config", "board"] and "simulated board" in lines["board"]
    _edit(board.config, "board = simulated", "board = qick")
    done, lines = run_check(board, "--only", "board")
    assert done.returncode == 1 and list(lines) == ["config", "board"]


def test_a_real_board_that_does_not_open_says_what_qick_said_and_what_to_do(board):
    _edit(board.config, "board = simulated", "board = qick")
    done, lines = run_check(board)
    assert done.returncode == 1
    # this machine is no RFSoC: qick has no QickSoc here (executor.openfail explains why)
    assert "cannot open the qick board" in lines["board"]
    assert "ImportError: cannot import name 'QickSoc'" in lines["board"]
    assert "set `[executor] board = simulated`" in lines["board"]
