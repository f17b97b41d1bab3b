"""The executor's sandbox, each step checked in a real process."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from executor import sandbox
from supervisor import childenv
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


def test_the_scrubbed_environment_keeps_allowed_names_and_refuses_a_secret():
    env = childenv.scrubbed_environment({"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x",
                                         "HOME": "/root", "QICK_CREDENTIALS": "/etc/qick/c"})
    assert env["PATH"] == "/bin" and "AWS_SECRET_ACCESS_KEY" not in env
    assert "QICK_CREDENTIALS" not in env and "HOME" not in env
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    with pytest.raises(SandboxError, match="looks like a secret"):
        childenv.scrubbed_environment({}, {"DEVICE_SECRET": "s"})


def test_the_executor_gets_only_allowed_names_and_no_credential(board_factory):
    """The supervisor decides the executor's environment (supervisor.childenv): the running
    executor holds allow-listed names only, no credential, and no credentials path."""
    leaky = dict(os.environ, MY_API_KEY="key-value-1", CLIENT_SECRET="secret-value-2",
                 AWS_SECRET_ACCESS_KEY="secret-value-3", HOME="/root")
    board = board_factory().start(env=leaky)
    pid = board.child_pid("executor")
    with open(f"/proc/{pid}/environ", "rb") as fh:
        env = dict(item.split("=", 1) for item in fh.read().decode().split("\0") if item)
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        argv = fh.read().decode().split("\0")
    assert set(env) - set(childenv.ENV_ALLOWED) <= {
        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONUNBUFFERED"}
    assert not [name for name in env if childenv.SECRET_NAME.search(name)]
    assert not [v for v in env.values() if v.startswith(("key-value", "secret-value"))]
    assert "HOME" not in env and env["PYTHONPATH"].split(os.pathsep)[0] == childenv.CODE_PATH
    assert "--credentials" not in argv and str(board.credentials) not in argv
