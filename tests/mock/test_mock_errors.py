"""A mock device that cannot run says so: ERROR with the reason, never an ONLINE device
that takes no work. And the server's install has what mock devices (the board daemon)
need."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import wait_for
from tests.server.api import World, status, submit

ROOT = Path(__file__).resolve().parents[2]


def _no_config(device_id: str) -> None:
    return None  # no device here uploads a configuration


def _requirement_names(reqs: list[str]) -> set[str]:
    names = set()
    for req in reqs:
        name = req.split(";")[0]
        for stop in "<>=![ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower())
    return names


def test_the_server_extra_can_run_mock_devices_and_the_board_extra_stays_lean():
    """Regression: `pip install '.[server]'` lacked h5py and qick, so mock workers died.
    A mock device is the board daemon: the server extra has what the board's has."""
    import tomllib  # Python 3.11+; this module is also collected by the board's 3.10 run
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {k: _requirement_names(v) for k, v in project["optional-dependencies"].items()}
    base = _requirement_names(project["dependencies"])
    # what a mock device runs: the board daemon (its bus, process handling, watchdog), the
    # simulated board (numpy, qick), results files (h5py), and the device client (requests)
    assert extras["board"] <= extras["server"] and "requests" in base
    assert {"pyzmq", "psutil", "sdnotify", "numpy", "qick", "h5py"} <= extras["server"]
    assert not extras["board"] & {"starlette", "uvicorn", "pyjwt", "sqlalchemy", "alembic",
                                   "psycopg"}


def _hide(tmp_path: Path, module: str) -> str:
    """A folder that, first on PYTHONPATH, makes ``import <module>`` fail as a missing
    install does: the interpreter setting of a broken server install."""
    folder = tmp_path / f"without-{module}"
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}' (hidden by the test)\")\n")
    return str(folder)


def _with_path(monkeypatch, folder: str) -> None:
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", folder + (os.pathsep + old if old else ""))


def test_a_mock_whose_daemon_cannot_import_h5py_shows_error_with_the_reason(
        queue_service_factory, tmp_path, monkeypatch):
    _with_path(monkeypatch, _hide(tmp_path, "h5py"))
    service = queue_service_factory()
    world = World(service)
    made = world.admin.post("/devices", json={"DeviceName": "mock", "Mock": {}}).json()
    device_id = made["DeviceId"]
    user, _ = world.user()

    def error_listed():
        item = next(d for d in user.get("/devices").json() if d["DeviceId"] == device_id)
        return item if item["DeviceStatus"] == "ERROR" else None

    item = wait_for(error_listed, 30, interval=0.1, what="the mock listed as ERROR")
    assert "h5py" in item["StatusReason"] and "qick-queue[server]" in item["StatusReason"]
    assert item["Mock"] is True and item["Simulated"] is True
    # work waits, and says why it has no start time
    work = submit(user, device_id)
    body = status(user, work)
    assert body["WorkStatus"] == "READY" and body["EstimatedStartAt"] is None
    # the daemon runs; its executor cannot open the board, and the daemon says why
    assert body["EstimatedStartReason"].startswith(
        "device in ERROR (executor: the executor could not open the board")
    assert "h5py" in body["EstimatedStartReason"]
    # the CLI: `devices` and `device` show it
    conf = tmp_path / "user.conf"
    conf.write_text(f"[service]\napi_endpoint = {service.url}\n[user]\napi_key = "
                    f"{service.admin_key}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    env.pop("PYTHONPATH")  # the CLI runs on a complete install
    env["PYTHONPATH"] = str(ROOT)
    for args in (["devices"], ["device", device_id]):
        out = subprocess.run([sys.executable, "-m", "userclient.cli", "--config", str(conf),
                              *args], capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, out.stderr
        assert "ERROR (mock)" in out.stdout and "h5py" in out.stdout, out.stdout
    # the daemon keeps trying its executor, with backoff, while the device stays ERROR
    daemon_log = service.data_dir / "mock" / device_id / "daemon.log"
    wait_for(lambda: daemon_log.read_text().count("-> BACKOFF") >= 2, 30,
             what="the executor restarted with backoff")
    assert "No module named 'h5py'" in daemon_log.read_text()


def test_a_mock_daemon_that_exits_at_once_marks_its_device_error(tmp_path, monkeypatch):
    """The fleet itself (real daemon processes, real SQLite): a daemon that cannot even
    start (its bus library, pyzmq, missing) exits at once; after a few times the device
    shows ERROR with the exit and the daemon's last words, kept while it lasts; ONLINE
    never."""
    from queueservice import views
    from queueservice.db import Database
    from queueservice.identities import IdentityStore
    from queueservice.mockfleet import QUICK_EXITS, MockFleet
    _with_path(monkeypatch, _hide(tmp_path, "zmq"))
    identities = IdentityStore(Database(tmp_path / "q.db"))
    row, _ = identities.add_device("mock", 60, int(time.time() * 1000), {"Board": "zcu216-v2"})
    fleet = MockFleet(identities, _no_config,
                      "http://127.0.0.1:9", "http://127.0.0.1:9", tmp_path / "mock")
    clock = 0.0
    for start in range(QUICK_EXITS):
        fleet.sweep(clock)  # starts the daemon
        daemon = fleet.daemons[row["device_id"]]
        assert daemon.starts == start + 1
        daemon.proc.wait(30)  # it dies at once
        assert identities.device(row["device_id"])["reported_status"] != "ONLINE"
        clock += 0.1
        fleet.sweep(clock)  # notices the exit; restarts after the backoff
        clock = daemon.not_before
    device = identities.device(row["device_id"])
    assert device["reported_status"] == "ERROR"
    listed = views.device_summary(device, int(time.time() * 1000))
    assert listed["DeviceStatus"] == "ERROR"
    assert f"exited at once {QUICK_EXITS} times in a row (exit code 1)" in listed["StatusReason"]
    assert "zmq" in listed["StatusReason"]  # its last words
    assert "pip install 'qick-queue[server]'" in listed["StatusReason"]
    fleet.stop()
