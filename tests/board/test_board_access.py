"""qick.service against the one table of what PYNQ and QICK touch (supervisor/boardaccess.py):
the repository's unit is exactly render_unit(), its sandbox allows what the table lists and
nothing else, each allowance is commented with who needs it; the executor keeps the table's
environment and still drops secrets; a rendered unit with odd paths passes systemd-analyze."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import boardaccess, childenv
from supervisor.boardaccess import NEEDS, needs, render_unit

pytestmark = pytest.mark.device310
ROOT = Path(__file__).resolve().parents[2]


def settings(text):
    """(section, key, value) of each setting, repeated keys kept, with the comment lines
    just above it."""
    section, comments, out = "", [], []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            comments.append(line)
            continue
        if line.startswith("["):
            section, comments = line[1:-1], []
            continue
        if line:
            key, _, value = line.partition("=")
            out.append((section, key, value, comments))
        comments = []
    return out


def values(text, key):
    return [v for s, k, v, _ in settings(text) if k == key]


def test_repository_unit_is_exactly_render_unit_with_the_static_defaults():
    assert (ROOT / "qick.service").read_text() == render_unit()


def test_sandbox_allows_exactly_the_table_each_commented_with_who_needs_it():
    unit = render_unit()
    rw = values(unit, "ReadWritePaths")
    assert rw == [("-" + boardaccess.DEFAULT_PYNQ_STATE_DIR) if n.what == boardaccess.PYNQ_STATE
                  else n.what for n in needs("path")]
    assert {"/lib/firmware", "/var/lib/qick", "/run/qick"} <= set(rw)
    assert boardaccess.DEFAULT_PYNQ_STATE_DIR.endswith("site-packages/pynq/pl_server")
    devices = values(unit, "DeviceAllow")
    assert devices == [f"{n.what} {n.access}" for n in needs("device")]
    for wanted in ("/dev/mem rw", "char-uio rw", "/dev/xdevcfg rw", "char-drm rw",
                   "/dev/null rw", "/dev/urandom r"):
        assert wanted in devices
    assert values(unit, "DevicePolicy") == ["closed"]
    # every allowance has a comment right above it naming who needs it
    for _, key, value, comments in settings(unit):
        if key in ("ReadWritePaths", "DeviceAllow"):
            need = next(n for n in NEEDS if value.lstrip("-") in (n.what, f"{n.what} {n.access}")
                        or (n.what == boardaccess.PYNQ_STATE and "pl_server" in value))
            assert comments and comments[-1].startswith(f"# {need.who}:"), (key, value)


def test_sys_stays_writable_for_the_fpga_manager_and_the_unit_says_why():
    unit = render_unit()
    keys = [k for _, k, _, _ in settings(unit)]
    assert values(unit, "ProtectSystem") == ["strict"]
    # either would make /sys (fpga_manager, spidev binding) or /dev read-only/empty
    assert "ProtectKernelTunables" not in keys and "PrivateDevices" not in keys
    assert "ProtectKernelTunables= stays off" in unit
    for need in needs("sysfs"):
        assert f"{need.who}: {need.what}: {need.why}" in unit
    assert {"/sys/class/fpga_manager/fpga0/firmware",
            "/sys/class/fpga_manager/fpga0/flags"} <= {n.what for n in needs("sysfs")}


def test_everything_else_of_the_unit_is_kept():
    unit = render_unit()
    for setting in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure",
                    "KillMode=mixed", "StateDirectory=qick", "RuntimeDirectory=qick",
                    "ProtectHome=read-only", "PrivateTmp=yes", "NoNewPrivileges=yes",
                    "RestrictNamespaces=net", "LimitCORE=0", "UMask=0027",
                    "WantedBy=multi-user.target"):
        assert f"\n{setting}\n" in unit, setting


def test_environment_files_and_command():
    unit = render_unit()
    assert values(unit, "EnvironmentFile") == ["-/etc/environment", "-/etc/qick/board.env"]
    assert values(unit, "ExecStart") == [
        "/usr/local/share/pynq-venv/bin/qick-supervisor --config /etc/qick/config "
        "--credentials /etc/qick/credentials"]
    with pytest.raises(ValueError):
        render_unit(command=())


def test_executor_keeps_the_tables_environment_and_drops_secrets():
    assert childenv.ENV_ALLOWED == boardaccess.env_allowed()
    assert {"XILINX_XRT", "BOARD", "PATH", "LD_LIBRARY_PATH", "PYTHONPATH"} <= \
        set(childenv.ENV_ALLOWED)
    assert not [n for n in childenv.ENV_ALLOWED if childenv.SECRET_NAME.search(n)]
    board = {"XILINX_XRT": "/usr", "BOARD": "ZCU216", "PATH": "/venv/bin:/usr/bin",
             "LD_LIBRARY_PATH": "/usr/lib", "AWS_SECRET_ACCESS_KEY": "x", "QICK_API_KEY": "k",
             "HOME": "/root", "VIRTUAL_ENV": "/venv"}
    env = childenv.scrubbed_environment(board)
    assert {k: env[k] for k in ("XILINX_XRT", "BOARD", "PATH", "LD_LIBRARY_PATH")} == \
        {k: board[k] for k in ("XILINX_XRT", "BOARD", "PATH", "LD_LIBRARY_PATH")}
    assert not {"AWS_SECRET_ACCESS_KEY", "QICK_API_KEY", "HOME", "VIRTUAL_ENV"} & set(env)


def test_a_rendered_unit_with_odd_paths_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install -y systemd"
    odd = tmp_path / "my venv" / "50%"
    odd.mkdir(parents=True)
    python = odd / "python"
    python.symlink_to(sys.executable)
    unit = render_unit(command=(str(python), "-m", "supervisor.cli"),
                       pynq_state_dir=str(odd / "pl_server"), pynq_state_optional=False,
                       env_files=(str(tmp_path / "environment"), str(odd / "board.env")))
    assert f'ExecStart="{tmp_path}/my venv/50%%/python" -m supervisor.cli' in unit
    assert f'ReadWritePaths="{tmp_path}/my venv/50%%/pl_server"' in unit
    path = tmp_path / "qick.service"
    path.write_text(unit)
    out = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stdout + out.stderr


def test_render_env_file_quotes_what_systemd_and_a_shell_both_read_back(tmp_path):
    env = {"PLAIN": "/usr", "WEIRD": 'a "b" $c `d` \\e\nline2 # not a comment', "EMPTY": ""}
    text = boardaccess.render_env_file(env, header="first\nsecond")
    assert text.startswith("# first\n# second\n")
    path = tmp_path / "board.env"
    path.write_text(text)
    # a real shell reads it back (systemd's EnvironmentFile undoes the same four escapes)
    out = subprocess.run(["bash", "--noprofile", "--norc", "-c",
                          'set -a; . "$1"; env -0', "x", str(path)],
                         env={}, capture_output=True, timeout=30, check=True).stdout
    got = dict(e.decode().split("=", 1) for e in out.split(b"\0") if b"=" in e)
    assert {k: got[k] for k in env} == env
    with pytest.raises(ValueError, match="not an environment variable name"):
        boardaccess.render_env_file({"BAD-NAME": "x"})


def test_boardaccess_imports_nothing_heavy():
    out = subprocess.run([sys.executable, "-c",
                          "import sys, supervisor.boardaccess; "
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                          "('numpy','qick','pynq','zmq','cloudqueue')))"],
                         capture_output=True, text=True, timeout=60, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]"
