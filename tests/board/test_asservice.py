"""``qick-supervisor check --as-service``: the ``systemd-run`` command built from the unit
file (pure), the search for the property that blocks the board (a fake runner: no
processes), and the real command on a machine where systemd is not PID 1."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from supervisor import asservice
from supervisor.asservice import (Unit, build_command, candidates, check_as_service,
                                  parse_unit, split_properties, unit_command)
from boardcore.errors import BoardConfigError
from tests.board.conftest import ROOT

SMALL = """\
# a hand-written unit
[Unit]
Description=small
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
WatchdogSec=30
ExecStart=-/opt/venv/bin/python -m supervisor.cli --config /etc/qick/config
Restart=on-failure
TimeoutStopSec=90
KillMode=mixed
EnvironmentFile=-/etc/environment
EnvironmentFile=-/etc/profile.d/xrt.env
Environment=BOARD=ZCU216 \\
    PYTHONUNBUFFERED=1
ProtectSystem=strict
ReadWritePaths=/var/lib/qick /run/qick
ReadWritePaths=/lib/firmware
; a comment
PrivateTmp=yes
DevicePolicy=closed
DeviceAllow=/dev/mem rw
DeviceAllow=char-drm rw
DeviceAllow=
DeviceAllow=char-uio rw
NoNewPrivileges=yes
RuntimeDirectory=qick
UMask=0027

[Install]
WantedBy=multi-user.target
"""

CONFIG, CREDS = "/etc/qick/config", "/etc/qick/credentials"


def props_of(argv):
    """The -p values of a systemd-run argv, in order."""
    return [argv[i + 1] for i, word in enumerate(argv) if word == "-p"]


def test_the_command_from_a_hand_written_unit():
    argv = build_command(parse_unit(SMALL, "small.service"), CONFIG, CREDS)
    assert argv[:6] == ["systemd-run", "--wait", "--pipe", "--collect", "--quiet",
                        "--service-type=exec"]
    assert props_of(argv) == [
        "RuntimeMaxSec=120",  # systemd stops a check that hangs
        "EnvironmentFile=-/etc/environment", "EnvironmentFile=-/etc/profile.d/xrt.env",
        "Environment=BOARD=ZCU216 PYTHONUNBUFFERED=1", "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/qick /run/qick", "ReadWritePaths=/lib/firmware",
        "PrivateTmp=yes", "DevicePolicy=closed",
        "DeviceAllow=char-uio rw",  # `DeviceAllow=` reset the two before it, as systemd does
        "NoNewPrivileges=yes", "RuntimeDirectory=qick", "UMask=0027",
        "RuntimeDirectoryPreserve=yes"]  # never remove a running daemon's /run/qick
    tail = argv[argv.index("--"):]
    assert tail == ["--", "/opt/venv/bin/python", "-m", "supervisor.cli", "check", "--only",
                    "board", "--config", CONFIG, "--credentials", CREDS]


def test_the_split_leaves_out_what_a_one_shot_check_has_no_use_for():
    passed, left_out = split_properties(parse_unit(SMALL).service())
    assert [k for k, _ in left_out] == ["Type", "NotifyAccess", "WatchdogSec", "ExecStart",
                                        "Restart", "TimeoutStopSec", "KillMode"]
    assert not {"Description", "StartLimitBurst", "WantedBy"} & {k for k, _ in passed}


def test_the_command_from_the_real_qick_service():
    unit = asservice.read_unit(str(ROOT / "qick.service"))
    argv = build_command(unit, CONFIG, CREDS)
    props = props_of(argv)
    keys = [p.split("=", 1)[0] for p in props]
    # every sandbox and environment line of the unit, each its own -p, in the unit's order
    service = unit.service()
    expected = [f"{k}={v}" for k, v in service
                if k in asservice.SANDBOX_KEYS or k in asservice.ENVIRONMENT_KEYS
                or k.startswith(asservice.SANDBOX_PREFIXES)]
    assert props[0] == "RuntimeMaxSec=120"
    assert props[1:len(expected) + 1] == expected and len(expected) > 10
    for key in ("ProtectSystem", "ReadWritePaths", "DevicePolicy", "DeviceAllow",
                "NoNewPrivileges", "StateDirectory", "RuntimeDirectory", "UMask"):
        assert key in keys
    assert keys.count("DeviceAllow") == sum(1 for k, _ in service if k == "DeviceAllow") >= 2
    for key in ("Type", "NotifyAccess", "WatchdogSec", "ExecStart", "Restart", "RestartSec",
                "TimeoutStartSec", "TimeoutStopSec", "KillMode", "StartLimitBurst",
                "Description", "WantedBy"):
        assert key not in keys
    assert argv[argv.index("--") + 1:][-7:] == ["check", "--only", "board", "--config",
                                                 CONFIG, "--credentials", CREDS]
    command = unit_command(unit)
    assert os.path.isabs(command[0]) and argv[argv.index("--") + 1:][:len(command)] == command


def test_the_files_the_service_uses_are_read_from_its_exec_start():
    unit = parse_unit(SMALL)
    assert asservice.unit_option(unit, "--config") == "/etc/qick/config"
    assert asservice.unit_option(unit, "--credentials") is None
    unit = parse_unit("[Service]\nExecStart=/q --credentials=/c/creds --config /c/conf\n")
    assert asservice.unit_option(unit, "--credentials") == "/c/creds"
    assert asservice.unit_command(unit) == ["/q"]


@pytest.mark.parametrize("text, words", [
    ("[Service]\nType=simple\n", "has no ExecStart"),
    ("ExecStart=/bin/true\n", r"inside a \[Section\]"),
    ("[Service]\nnot a key value\n", "cannot read the line"),
])
def test_a_unit_that_cannot_be_used_says_why(text, words):
    with pytest.raises(BoardConfigError, match=words):
        unit_command(parse_unit(text, "bad.service"))


def test_the_candidates_skip_grants_and_the_environment_and_group_the_devices():
    passed, _ = split_properties(parse_unit(SMALL).service())
    labels = [label for label, _ in candidates(passed)]
    assert labels == ["ProtectSystem=strict", "PrivateTmp=yes", "DevicePolicy=closed",
                      "NoNewPrivileges=yes", "UMask=0027"]
    devices = dict(candidates(passed))["DevicePolicy=closed"]
    assert devices == [("DevicePolicy", "closed"), ("DeviceAllow", "char-uio rw")]


class FakeRunner:
    """Fails while any of ``blockers`` is passed (or the environment file is missing);
    records every command."""

    def __init__(self, *blockers: str, needs: str = "EnvironmentFile=-/etc/environment"):
        self.blockers, self.needs, self.calls = blockers, needs, []

    def __call__(self, argv):
        self.calls.append(argv)
        props = props_of(argv)
        if self.needs not in props:
            return 1, "FAIL  board  RuntimeError: No Devices Found: XILINX_XRT is not set"
        if any(b in props for b in self.blockers):
            return 1, "FAIL  board  OSError: [Errno 30] Read-only file system: '/x'"
        return 0, "ok    board  qick board ZCU216 opened"


def test_a_passing_check_runs_once_and_says_the_service_can_be_enabled():
    run = FakeRunner()
    verdict = check_as_service(parse_unit(SMALL, "small.service"), CONFIG, CREDS, run)
    assert verdict.ok and len(run.calls) == 1
    assert "opened" in verdict.lines[0] and "can be enabled" in verdict.lines[-1]


def test_the_first_property_whose_removal_opens_the_board_is_named():
    run = FakeRunner("ProtectSystem=strict")
    verdict = check_as_service(parse_unit(SMALL, "small.service"), CONFIG, CREDS, run)
    assert not verdict.ok
    assert "Read-only file system" in verdict.lines[0]  # what the board step said
    assert verdict.lines[-1].startswith("the board opens when ProtectSystem=strict is left "
                                        "out: add the path")
    assert "ReadWritePaths" in verdict.lines[-1]
    # sandboxed, then without the sandbox (environment kept), then ProtectSystem left out
    assert len(run.calls) == 3
    baseline = props_of(run.calls[1])
    assert [p for p in baseline if p.startswith("Environment")] == [
        "EnvironmentFile=-/etc/environment", "EnvironmentFile=-/etc/profile.d/xrt.env",
        "Environment=BOARD=ZCU216 PYTHONUNBUFFERED=1"]
    assert not [p for p in baseline if p.startswith(("Protect", "Device", "ReadWrite"))]


def test_a_closed_device_policy_is_found_with_its_device_allow_lines():
    run = FakeRunner("DevicePolicy=closed")
    verdict = check_as_service(parse_unit(SMALL), CONFIG, CREDS, run)
    assert "DevicePolicy=closed is left out: add the device" in verdict.lines[-1]
    assert "DeviceAllow=char-drm rw" in verdict.lines[-1]
    last = props_of(run.calls[-1])
    assert not [p for p in last if p.startswith("Device")] and "ProtectSystem=strict" in last


def test_a_failure_outside_the_sandbox_too_is_not_blamed_on_a_property():
    run = FakeRunner(needs="EnvironmentFile=/nowhere")
    verdict = check_as_service(parse_unit(SMALL), CONFIG, CREDS, run)
    assert not verdict.ok and len(run.calls) == 2
    assert "No Devices Found" in verdict.lines[0]
    assert "even with the whole sandbox left out" in verdict.lines[-1]


def test_two_blockers_at_once_and_the_bound_on_runs():
    run = FakeRunner("ProtectSystem=strict", "NoNewPrivileges=yes")
    verdict = check_as_service(parse_unit(SMALL), CONFIG, CREDS, run)
    assert "no single property left out makes it open" in verdict.lines[-1]
    assert len(run.calls) == 2 + 5  # one run per candidate, no more
    run = FakeRunner("UMask=0027")
    verdict = check_as_service(parse_unit(SMALL), CONFIG, CREDS, run, max_runs=3)
    assert "within 3 runs" in verdict.lines[-1] and len(run.calls) == 1 + 3


def test_a_unit_command_that_is_not_here_says_to_install_the_service(tmp_path):
    assert asservice.command_problem([sys.executable], "u") is None
    problem = asservice.command_problem(["/usr/local/bin/nowhere-qick"], "u.service")
    assert "ExecStart names /usr/local/bin/nowhere-qick" in problem
    assert "install-service" in problem


def test_without_systemd_as_pid_1_the_real_command_says_so_in_one_line():
    assert not os.path.isdir("/run/systemd/system"), "this test needs a machine without systemd"
    done = subprocess.run([sys.executable, "-m", "supervisor.cli", "check", "--as-service"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "systemd is not running here (not PID 1)" in lines[0], \
        done.stderr


def test_systemd_detection_follows_its_marker_directory(tmp_path):
    assert asservice.systemd_running(str(tmp_path)) is True
    assert asservice.systemd_running(str(tmp_path / "absent")) is False


def test_the_default_unit_is_the_installed_one_else_the_repositorys():
    expected = ("/etc/systemd/system/qick.service"
                if os.path.exists("/etc/systemd/system/qick.service")
                else str(ROOT / "qick.service"))
    assert asservice.default_unit_path() == expected
    assert isinstance(asservice.read_unit(expected), Unit)
    with pytest.raises(BoardConfigError, match="cannot read the unit /nowhere/q.service"):
        asservice.read_unit("/nowhere/q.service")


def write_unit(path, exec_start):
    path.write_text(SMALL.replace(
        "ExecStart=-/opt/venv/bin/python -m supervisor.cli --config /etc/qick/config",
        f"ExecStart={exec_start}"))
    return path


def test_the_command_systemd_run_would_start_opens_the_board_as_a_real_process(
        tmp_path, queue_service):
    """What runs inside the transient service: the unit's command with ``check --only board``
    and the files its ExecStart names (a simulated board here)."""
    from tests.board.conftest import BoardDaemon
    daemon = BoardDaemon(tmp_path / "b", queue_service)
    try:
        unit = parse_unit(write_unit(tmp_path / "q.service", (
            f"{sys.executable} -m supervisor.cli --config {daemon.config} "
            f"--credentials {daemon.credentials}")).read_text())
        argv = build_command(unit, asservice.unit_option(unit, "--config"),
                             asservice.unit_option(unit, "--credentials"))
        inner = argv[argv.index("--") + 1:]
        done = subprocess.run(inner, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [line.split()[:2] for line in done.stdout.splitlines()] == [
            ["ok", "config"], ["ok", "board"]]
    finally:
        daemon.cleanup()


def test_the_cli_says_which_unit_and_files_and_what_blocks_the_board(tmp_path, monkeypatch,
                                                                      capsys):
    """The CLI layer over the search, with systemd (the true edge) replaced: a machine with
    systemd as PID 1, root, and a transient service that fails while ProtectSystem is set."""
    from supervisor import cli
    monkeypatch.setattr(asservice, "systemd_running", lambda: True)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    run = FakeRunner("ProtectSystem=strict")
    monkeypatch.setattr(asservice, "run_command", run)
    unit = write_unit(tmp_path / "q.service",
                      f"{sys.executable} -m supervisor.cli --config /c/conf")
    assert cli.main(["check", "--as-service", "--unit", str(unit)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"unit: {unit}"
    assert out[-1].startswith("the board opens when ProtectSystem=strict is left out")
    tail = run.calls[0][run.calls[0].index("--") + 1:]
    assert tail == [sys.executable, "-m", "supervisor.cli", "check", "--only", "board",
                    "--config", "/c/conf", "--credentials", "/etc/qick/credentials"]
    # the repository's unit names the board's path of the command (not this machine's)
    program = unit_command(asservice.read_unit(asservice.REPO_UNIT))[0]
    if not os.path.exists("/etc/systemd/system/qick.service") and not os.path.exists(program):
        assert cli.main(["check", "--as-service"]) == 1
        captured = capsys.readouterr()
        assert "(the repository's: none is installed in /etc/systemd/system)" in captured.out
        assert f"ExecStart names {program}, which is not an executable here" in captured.err
        assert "install-service" in captured.err
