"""The fleet itself (real daemon processes, real SQLite, no web process): what it writes for
a mock's board daemon, a mirror that waits for its device's soccfg, a deep data folder."""
from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import psutil

from boardcore.bus import MAX_IPC_PATH
from boardcore.settings import load_settings
from cloudqueue.config import load_config
from executor.boards import zcu216_v1
from queueservice import cli, mockfleet
from queueservice.db import Database
from queueservice.identities import IdentityStore
from queueservice.mockfleet import MockFleet
from queueservice.settings import MOCK_DEADLINE_SECONDS, MOCK_MEMORY_MB
from tests.helpers import wait_for


def _configs_in(folder: Path):
    """MockFleet's ``read_config`` over configurations kept as files in ``folder``."""
    def read_config(device_id: str) -> str | None:
        path = folder / device_id
        return path.read_text() if path.is_file() else None
    return read_config


def private(path) -> bool:
    return stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_mock_limits_are_declared_once():
    serve = cli._parser().parse_args(["serve", "--data", "somewhere"])
    assert serve.mock_deadline_seconds == MOCK_DEADLINE_SECONDS
    assert serve.mock_memory_mb == MOCK_MEMORY_MB
    assert mockfleet.MAX_IPC_PATH == MAX_IPC_PATH  # kept equal: the web process has no zmq


def test_a_mirror_waits_for_its_soccfg_then_runs_the_daemon_on_a_copy_of_it(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))  # the service's systemd
    identities = IdentityStore(Database(tmp_path / "q.db"))
    now = int(time.time() * 1000)
    real, _ = identities.add_device("real", 60, now)
    mirror, _ = identities.add_device("mirror", 9, now, {"MirrorOf": real["device_id"]})
    configs = tmp_path / "configs"
    configs.mkdir()
    deep = tmp_path / ("d" * 80)  # the bus socket cannot live under this data folder
    fleet = MockFleet(identities, _configs_in(configs),
                      "http://127.0.0.1:9/api", "http://127.0.0.1:9", deep / "mock",
                      deadline_seconds=7, memory_mb=900)
    try:
        fleet.sweep(0.0)
        daemon = fleet.daemons[mirror["device_id"]]
        assert daemon.proc is None  # nothing to run on yet
        row = identities.device(mirror["device_id"])
        assert row["reported_status"] == "ERROR"
        assert f"mirrored device {real['device_id']} has not uploaded its configuration" in \
            json.loads(row["health"])["Reason"]

        soccfg = zcu216_v1()
        soccfg["fw_timestamp"] = "lab build"
        (configs / real["device_id"]).write_text(json.dumps(soccfg))
        fleet.sweep(0.5)
        assert daemon.proc is not None and daemon.starts == 1
        folder = deep / "mock" / mirror["device_id"]
        for name in ("config", "credentials", "soccfg.json"):
            assert private(folder / name), name
        settings = load_settings(folder / "config")
        assert settings.board == "simulated" and not settings.network_isolation
        assert settings.deadline_seconds == 7 and settings.address_space_mb == 900
        assert not settings.health_enabled
        assert settings.spool == folder / "spool"
        assert settings.queue_heartbeat_seconds == 1  # often, within RefreshTimeout (9 s)
        assert json.loads(open(settings.soccfg_json).read())["fw_timestamp"] == "lab build"
        # a short private run folder instead, removed with the daemon
        bus = os.path.join(settings.run_dir, "bus")
        assert len(bus) < MAX_IPC_PATH and folder not in settings.run_dir.parents
        assert stat.S_IMODE(os.stat(settings.run_dir).st_mode) == 0o700
        # a fresh secret the service accepts, kept only in the 0600 file
        cfg = load_config(folder / "config", folder / "credentials")
        assert cfg.device_id == mirror["device_id"]
        secret = cfg.require("credentials", "secret")
        assert identities.device_by_client(mirror["client_id"], secret)["device_id"] == \
            mirror["device_id"]
        pid = daemon.proc.pid
        assert "NOTIFY_SOCKET" not in psutil.Process(pid).environ()  # not its unit
        wait_for(lambda: len(psutil.Process(pid).children()) == 3, 20,
                 what="the daemon's downloader, executor and uploader")
    finally:
        fleet.stop()
    assert daemon.proc.returncode == 0  # SIGTERM: the daemon drained and stopped by itself
    assert not settings.run_dir.exists()


def test_a_daemon_left_by_a_crashed_service_is_stopped_before_a_new_one_starts(tmp_path):
    """Two daemons must never share a mock's spool: a restarted service (a new fleet on the
    same data folder) first stops the daemon the crashed one left running."""
    identities = IdentityStore(Database(tmp_path / "q.db"))
    row, _ = identities.add_device("mock", 60, int(time.time() * 1000), {"Board": "zcu216-v2"})

    def fleet() -> MockFleet:
        return MockFleet(identities, _configs_in(tmp_path),
                         "http://127.0.0.1:9/api", "http://127.0.0.1:9", tmp_path / "mock")

    crashed = fleet()
    crashed.sweep(0.0)
    left = crashed.daemons[row["device_id"]].proc  # its service is gone without a stop()
    restarted = fleet()
    try:
        restarted.sweep(0.0)
        assert left.poll() is not None  # stopped (and reaped) before the new one started
        new = restarted.daemons[row["device_id"]].proc
        assert new.poll() is None and new.pid != left.pid
        assert (tmp_path / "mock" / row["device_id"] / "daemon.pid").read_text().strip() == \
            str(new.pid)
    finally:
        restarted.stop()
        shutil.rmtree(crashed.daemons[row["device_id"]].run_dir, ignore_errors=True)
