"""The executor's sandbox, each step checked in a real process."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from executor import sandbox
from boardcore.errors import SandboxError
from tests.helpers import wait_for

pytestmark = pytest.mark.device310
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def probe(*args, env=None, timeout=20):
    out = subprocess.run([sys.executable, "-m", "tests.board.sandbox_probe", *map(str, args)],
                         cwd=ROOT, capture_output=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout.decode().splitlines()[-1])


def test_a_second_holder_cannot_lock_the_board(tmp_path):
    lock_file = tmp_path / "board.lock"
    holder = subprocess.Popen([sys.executable, "-m", "tests.board.sandbox_probe", "lock",
                               lock_file, "30"], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert json.loads(holder.stdout.readline())["locked"]
        second = probe("lock", lock_file)
        assert not second["locked"]
        assert f"in use by process {holder.pid}" in second["error"]
        assert "notebook" in second["error"]
    finally:
        holder.kill()
        holder.wait()
    assert probe("lock", lock_file)["locked"]  # released when its holder died


def test_lock_file_in_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SandboxError, match="set \\[executor\\] lock_file"):
        sandbox.BoardLock(str(tmp_path / "nope" / "board.lock")).acquire()


def test_the_executor_dies_with_its_parent():
    out = subprocess.run([sys.executable, "-m", "tests.board.sandbox_probe", "orphan"],
                         cwd=ROOT, capture_output=True, timeout=20)
    info = json.loads(out.stdout.decode().splitlines()[-1])
    assert info["armed"]

    def gone():
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{info['pid']}/stat") as fh:  # a zombie not yet reaped counts
            return fh.read().split(")")[1].split()[0] == "Z"
    try:
        wait_for(gone, timeout=10, what="the orphaned child to die")
    finally:
        try:
            os.kill(info["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_limits_no_core_files_and_address_space():
    out = probe("limits")
    assert out["core"] == [0, 0]
    assert out["nofile"] == [64, 64]
    assert out["as"] == [2 * 2**30, 2 * 2**30]
    assert out["big_alloc"] == "MemoryError"


def test_network_is_private_where_the_platform_allows():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        out = probe("network", server.getsockname()[1])
    finally:
        server.close()
    if os.geteuid() == 0:
        assert out["network"] == "private"
        assert out["reached_loopback_server"] is False
    else:  # documented fallback: carries on, and says why
        assert out["network"].startswith("shared (")


def test_environment_is_scrubbed_of_credentials():
    env = sandbox.scrubbed_environment({"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x",
                                        "HOME": "/root", "QICK_CREDENTIALS": "/etc/qick/c"})
    assert env["PATH"] == "/bin" and "AWS_SECRET_ACCESS_KEY" not in env
    assert "QICK_CREDENTIALS" not in env and "HOME" not in env
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    with pytest.raises(SandboxError, match="looks like a secret"):
        sandbox.scrubbed_environment({}, {"DEVICE_SECRET": "s"})
    leaky = dict(os.environ, PYTHONPATH=ROOT, MY_API_KEY="k", CLIENT_SECRET="s")
    out = probe("env", env=leaky)
    assert {"CLIENT_SECRET", "MY_API_KEY"} <= set(out["dropped"])
    assert "CLIENT_SECRET" not in out["env"]
