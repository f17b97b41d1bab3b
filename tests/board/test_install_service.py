"""``qick-supervisor install-service``: the board's environment captured from a fake /etc tree
(profile scripts exporting XILINX_XRT, BOARD, a venv PATH; one sourcing another file, one
failing, one printing noise), ``--dry-run`` on it, a real install into a temp unit path with a
fake ``systemctl`` on PATH, and the one-line errors. Real processes throughout."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from supervisor import boardaccess
from boardcore.errors import InstallError
from supervisor.install import board_environment, capture_profile_environment

pytestmark = pytest.mark.device310
ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def fake_etc(tmp_path):
    """An /etc as a PYNQ image has it, with a few awkward scripts."""
    etc = tmp_path / "etc"
    (etc / "profile.d").mkdir(parents=True)
    venv = tmp_path / "pynq-venv"
    (venv / "bin").mkdir(parents=True)
    (etc / "environment").write_text(f'PATH="{SYSTEM_PATH}"\nLANG=C.UTF-8\n')
    (venv / "bin" / "activate").write_text(
        f'VIRTUAL_ENV="{venv}"\nexport VIRTUAL_ENV\nPATH="$VIRTUAL_ENV/bin:$PATH"\nexport PATH\n'
        'PS1="(pynq-venv) ${PS1:-}"\nexport PS1\ndeactivate () { :; }\n')
    scripts = {
        "00-banner.sh": 'echo "Welcome to PYNQ"\necho "some warning" >&2\n',
        "boardname.sh": "export BOARD=ZCU216\n",
        "pynq_venv.sh": f'source "{venv}/bin/activate"\n',  # sources another file
        "xrt_setup.sh": 'export XILINX_XRT=/usr\nexport LD_LIBRARY_PATH="$XILINX_XRT/lib"\n'
                        'echo "XILINX_XRT      : $XILINX_XRT"\nNOT_EXPORTED=1\n',
        "yy-odd.sh": "export ODD='a \"b\" $c `d` \\e'\nexport DEVICE_TOKEN=t\n",
        "zz-fails.sh": "no-such-command-anywhere\nfalse\nreturn 3\n",
        "not-a-profile-script.txt": "export IGNORED=1\n",
    }
    for name, text in scripts.items():
        (etc / "profile.d" / name).write_text(text)
    return etc, venv


def test_profile_scripts_environment_is_what_they_set_or_changed(fake_etc):
    etc, venv = fake_etc
    got = capture_profile_environment(str(etc))
    assert got.env == {"BOARD": "ZCU216", "XILINX_XRT": "/usr", "LD_LIBRARY_PATH": "/usr/lib",
                       "PATH": f"{venv}/bin:{SYSTEM_PATH}", "VIRTUAL_ENV": str(venv),
                       "ODD": 'a "b" $c `d` \\e'}
    # /etc/environment's own values are left to EnvironmentFile=/etc/environment
    assert "LANG" not in got.env and got.complete["LANG"] == "C.UTF-8"
    assert any("DEVICE_TOKEN" in note and "secret" in note for note in got.notes)


def test_a_script_that_exits_the_shell_is_named_and_what_came_before_is_kept(fake_etc):
    etc, _ = fake_etc
    (etc / "profile.d" / "m-exits.sh").write_text("exit 1\n")
    got = capture_profile_environment(str(etc))
    assert got.env["BOARD"] == "ZCU216" and "ODD" not in got.env  # yy-odd.sh came after
    assert any(str(etc / "profile.d" / "m-exits.sh") in n and "exited the shell" in n
               for n in got.notes)


def test_a_missing_etc_tree_gives_an_empty_environment_and_a_warning(tmp_path):
    got = capture_profile_environment(str(tmp_path / "nothing"))
    assert got.env == {}
    out = run_cli("--dry-run", "--etc", str(tmp_path / "nothing"))
    assert out.returncode == 0
    assert "XILINX_XRT is set neither in" in out.stderr and "PYNQ will find no device" \
        in out.stderr
    assert "EnvironmentFile=-" + str(tmp_path / "nothing" / "environment") not in out.stdout


def test_board_environment_drops_shell_internals_and_unchanged_values():
    before = {"PATH": "/bin", "LANG": "C", "PWD": "/", "SHLVL": "1", "GONE": "x"}
    after = {"PATH": "/venv/bin:/bin", "LANG": "C", "PWD": "/tmp", "SHLVL": "2", "_": "/bin/env",
             "BASH_FUNC_f%%": "() { :; }", "PS1": "$ ", "XILINX_XRT": "/usr"}
    kept, notes = board_environment(before, after)
    assert kept == {"PATH": "/venv/bin:/bin", "XILINX_XRT": "/usr"}
    assert any("unset GONE" in n for n in notes)


def run_cli(*args, env=None, user=None, umask=None):
    cmd = [sys.executable, "-m", "supervisor.cli", "install-service", *args]
    if umask is not None:
        cmd = ["sh", "-c", f'umask {umask} && exec "$@"', "sh", *cmd]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    base = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=dict(base, **(env or {})), cwd="/")


def expected_command():
    script = Path(sys.executable).parent / "qick-supervisor"
    return str(script) if script.exists() else f"{sys.executable} -m supervisor.cli"


def test_dry_run_prints_the_unit_and_the_environment_file_and_writes_nothing(fake_etc, tmp_path):
    etc, venv = fake_etc
    unit_path = tmp_path / "systemd" / "qick.service"
    out = run_cli("--dry-run", "--etc", str(etc), "--unit-path", str(unit_path))
    assert out.returncode == 0, out.stderr
    assert f"# --- {unit_path} (dry run: nothing written)" in out.stdout
    assert f"ExecStart={expected_command()} --config /etc/qick/config" in out.stdout
    assert f"EnvironmentFile=-{etc}/environment\nEnvironmentFile=-{etc}/qick/board.env" \
        in out.stdout
    assert "DeviceAllow=char-drm rw" in out.stdout and "ReadWritePaths=/lib/firmware" in out.stdout
    assert f"# --- {etc}/qick/board.env (dry run: nothing written)" in out.stdout
    assert 'XILINX_XRT="/usr"' in out.stdout and 'BOARD="ZCU216"' in out.stdout
    assert f'PATH="{venv}/bin:{SYSTEM_PATH}"' in out.stdout
    assert "Welcome to PYNQ" not in out.stdout + out.stderr  # the scripts' noise stays out
    assert "DEVICE_TOKEN" in out.stderr and "DEVICE_TOKEN=" not in out.stdout
    assert not unit_path.exists() and not (etc / "qick").exists()


@pytest.fixture
def fake_systemctl(tmp_path):
    """A ``systemctl`` that records its arguments, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "systemctl.args"
    script = bin_dir / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\nexit ${{FAKE_SYSTEMCTL_EXIT:-0}}\n')
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, record


@pytest.mark.skipif(os.geteuid() != 0, reason="a real install runs as root")
def test_install_writes_both_files_atomically_runs_daemon_reload_and_says_what_next(
        fake_etc, fake_systemctl, tmp_path):
    etc, _ = fake_etc
    env, record = fake_systemctl
    unit_path = tmp_path / "systemd" / "system" / "qick.service"
    out = run_cli("--etc", str(etc), "--unit-path", str(unit_path), env=env,
                  umask="077")
    assert out.returncode == 0, out.stderr
    assert record.read_text() == "daemon-reload\n"
    unit = unit_path.read_text()
    assert unit == boardaccess.render_unit(
        expected_command().split(" "), boardaccess.DEFAULT_PYNQ_STATE_DIR,
        [f"{etc}/environment", f"{etc}/qick/board.env"])
    board_env = etc / "qick" / "board.env"
    assert 'XILINX_XRT="/usr"' in board_env.read_text()
    for path in (unit_path, board_env):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not [p for p in unit_path.parent.iterdir() if p.name.endswith(".tmp")]
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"wrote {board_env} (from the profile scripts: BOARD, ")
    assert lines[1].startswith(f"wrote {unit_path} (ExecStart {expected_command()};")
    assert lines[2] == "ran systemctl daemon-reload"
    assert lines[3].startswith("next: qick-supervisor check --as-service")
    assert lines[4] == "then: systemctl enable --now qick"
    analyze = shutil.which("systemd-analyze")
    verify = subprocess.run([analyze, "verify", str(unit_path)], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0 and verify.stdout == verify.stderr == "", verify.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to write as root")
def test_a_failing_daemon_reload_exits_1_and_says_the_files_are_written(
        fake_etc, fake_systemctl, tmp_path):
    etc, _ = fake_etc
    env, _ = fake_systemctl
    unit_path = tmp_path / "qick.service"
    out = run_cli("--etc", str(etc), "--unit-path", str(unit_path),
                  env=dict(env, FAKE_SYSTEMCTL_EXIT="1"))
    assert out.returncode == 1 and unit_path.exists()
    assert out.stderr.strip().splitlines()[-1].startswith(
        "qick-supervisor: systemctl daemon-reload failed (exit 1); the files are written")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to get past the root check")
def test_systemctl_missing_is_one_line_exit_2_and_nothing_written(fake_etc, tmp_path):
    etc, _ = fake_etc
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    (empty / "bash").symlink_to(shutil.which("bash"))  # bash is there, systemctl is not
    unit_path = tmp_path / "qick.service"
    out = run_cli("--etc", str(etc), "--unit-path", str(unit_path), env={"PATH": str(empty)})
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last == ("qick-supervisor: systemctl is not on PATH: this machine does not run "
                    "systemd (use --dry-run to see the unit)")
    assert not unit_path.exists() and not (etc / "qick").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to get past the root check")
def test_an_unwritable_unit_path_is_one_line_exit_2_and_nothing_written(
        fake_etc, fake_systemctl, tmp_path):
    etc, _ = fake_etc
    env, record = fake_systemctl
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run_cli("--etc", str(etc), "--unit-path", str(blocker / "qick.service"), env=env)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"qick-supervisor: cannot write {blocker}/qick.service: ")
    assert not (etc / "qick").exists() and not record.exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="drops from root to nobody with setpriv")
def test_not_root_is_one_line_exit_2_but_dry_run_works(fake_etc):
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-c", "pass"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{sys.executable} cannot run as nobody here (it lives under /root?)")
    shared = Path(tempfile.mkdtemp(prefix="qi", dir="/tmp"))  # pytest's tmp is root-only
    try:
        shared.chmod(0o755)
        etc = shutil.copytree(fake_etc[0], shared / "etc")
        out = run_cli("--etc", str(etc), "--unit-path", str(shared / "qick.service"),
                      user=65534)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith(
            "qick-supervisor: install-service writes system files and runs systemctl: "
            "run it as root")
        assert not (shared / "qick.service").exists()
        dry = run_cli("--dry-run", "--etc", str(etc), user=65534)
        assert dry.returncode == 0, dry.stderr
        assert 'BOARD="ZCU216"' in dry.stdout
    finally:
        shutil.rmtree(shared)


def test_install_refuses_without_bash_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InstallError, match="bash is not installed"):
        capture_profile_environment(str(tmp_path))


def test_pynq_state_folder_is_found_without_importing_pynq(fake_etc, tmp_path):
    etc, _ = fake_etc
    site = tmp_path / "site"
    (site / "pynq" / "pl_server").mkdir(parents=True)
    # importing it here would need the board: a sign that find_spec imported it
    (site / "pynq" / "__init__.py").write_text("raise RuntimeError('pynq was imported')\n")
    out = run_cli("--dry-run", "--etc", str(etc),
                  env={"PYTHONPATH": f"{ROOT}:{site}"})
    assert out.returncode == 0, out.stderr
    # found on this machine: no "-", a missing folder later should fail loudly
    assert f"\nReadWritePaths={site}/pynq/pl_server\n" in out.stdout
    assert "pynq is not importable" not in out.stderr
