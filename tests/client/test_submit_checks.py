"""``userclient submit`` refuses what the board would refuse (exit 2, nothing queued), with
``--force`` to queue anyway; ``UserClient.create_work`` itself still queues anything (the
library is a drop-in). CLI subprocesses against the real service; the devices' soccfgs
are the simulated boards' (what a board daemon uploads)."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid

import h5py
import pytest

from executor.boards import zcu216_v1, zcu216_v2
from qickwork import ResultsWriter
from tests.qick.programs import SweepV2
from tests.server.api import World, put_file
from userclient.client import UserClient
from userclient.workload import WorkloadManager

CLI = [sys.executable, "-m", "userclient.cli"]


def submit(conf, *args: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    return subprocess.run(CLI + ["--config", str(conf), "submit", *args], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def v2_workload(tmp_path_factory):
    """A real workload compiled for the simulated ZCU216 tProc v2 board."""
    from qick import QickConfig
    soccfg = QickConfig(zcu216_v2())
    wm = WorkloadManager(soccfg)
    for freq in (140.0, 150.0):
        wm.add(SweepV2(soccfg, reps=10, final_delay=1.0, cfg={"freq": freq}))
    path = tmp_path_factory.mktemp("submit") / "sweep.json.gz"
    wm.write(path)
    return path


@pytest.fixture
def lab(queue_service, tmp_path):
    world = World(queue_service)
    user, _ = world.user()
    conf = tmp_path / "user.conf"
    conf.write_text(f"[service]\napi_endpoint = {queue_service.url}\n"
                    f"[user]\napi_key = {user.token}\n")
    conf.chmod(0o600)  # it holds a key: a looser file gets a warning on stderr

    def device(soccfg: dict | None):
        dev = world.device(f"board-{uuid.uuid4().hex[:6]}")
        url = dev.heartbeat().json()["UploadUrl"]
        if soccfg is not None:
            assert put_file(url, json.dumps(soccfg).encode()).status_code == 200
        return dev.id

    def queued() -> list[str]:
        return [w["WorkId"] for w in user.get("/workloads").json()["Items"]]

    return {"conf": conf, "device": device, "queued": queued, "tmp": tmp_path,
            "service": queue_service, "key": user.token}


def _results_file(path) -> None:
    with ResultsWriter(path, programs_total=1) as writer:
        writer.add(0, acqtype="accumulated", seconds=0.0, avg=[[[1.0, 2.0]]])
        writer.finish("DONE", seconds=0.0)


@pytest.mark.parametrize("kind, message", [
    ("text", "not a gzip file"),
    ("empty", "is empty"),
    ("empty gzip", "not valid JSON"),
    ("truncated gzip", "truncated"),
    ("results file", "HDF5 file (a results file?)"),
])
def test_submit_refuses_a_file_that_is_not_a_workload(lab, v2_workload, kind, message):
    device_id = lab["device"](zcu216_v2())
    path = lab["tmp"] / "bad"
    if kind == "text":
        path.write_text("freq = 150 MHz\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "empty gzip":
        path.write_bytes(gzip.compress(b""))
    elif kind == "truncated gzip":
        path.write_bytes(v2_workload.read_bytes()[:200])
    else:
        _results_file(path)
        assert h5py.is_hdf5(path)
    done = submit(lab["conf"], str(path), "--device", device_id)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "Nothing was submitted (--force queues it anyway)" in done.stderr
    assert done.stdout == "" and lab["queued"]() == []


def test_submit_refuses_a_workload_compiled_for_another_firmware(lab, v2_workload):
    v1_device = lab["device"](zcu216_v1())
    refused = submit(lab["conf"], str(v2_workload), "--device", v1_device)
    assert refused.returncode == 2, refused.stderr
    assert f"does not fit device {v1_device}" in refused.stderr
    assert "tProc v2 program" in refused.stderr and "tProc v1" in refused.stderr
    assert lab["queued"]() == []

    # same tProc version, another firmware (a different timing clock): refused by name
    other = zcu216_v2()
    other["tprocs"][0]["f_time"] = other["tprocs"][0]["f_time"] / 2
    other_device = lab["device"](other)
    refused = submit(lab["conf"], str(v2_workload), "--device", other_device)
    assert refused.returncode == 2 and "compiled for firmware" in refused.stderr
    assert lab["queued"]() == []

    forced = submit(lab["conf"], str(v2_workload), "--device", v1_device, "--force")
    assert forced.returncode == 0, forced.stderr
    assert lab["queued"]() == [forced.stdout.strip()]


def test_submit_queues_a_workload_that_fits_the_device(lab, v2_workload):
    device_id = lab["device"](zcu216_v2())
    done = submit(lab["conf"], str(v2_workload), "--device", device_id)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and lab["queued"]() == [done.stdout.strip()]


def test_a_device_without_soccfg_gets_the_workload_with_a_warning(lab, v2_workload):
    silent = lab["device"](None)
    done = submit(lab["conf"], str(v2_workload), "--device", silent)
    assert done.returncode == 0, done.stderr
    assert "warning" in done.stderr and "has not uploaded its configuration" in done.stderr
    assert lab["queued"]() == [done.stdout.strip()]
    # the file is still checked: a text file is refused before the device is asked
    (lab["tmp"] / "notes.txt").write_text("hello")
    refused = submit(lab["conf"], str(lab["tmp"] / "notes.txt"), "--device", silent)
    assert refused.returncode == 2 and "not a gzip file" in refused.stderr


def test_submit_to_an_unknown_device_is_not_found(lab, v2_workload):
    done = submit(lab["conf"], str(v2_workload), "--device", str(uuid.uuid4()))
    assert done.returncode == 4 and "Traceback" not in done.stderr
    assert lab["queued"]() == []


def test_the_library_create_work_still_queues_anything(lab):
    """The check is the CLI's: ``UserClient.create_work`` stays the drop-in it was."""
    device_id = lab["device"](zcu216_v1())
    (lab["tmp"] / "anything").write_text("not a workload")
    client = UserClient.from_config(lab["conf"], out=None)
    work_id = client.create_work(lab["tmp"] / "anything", device_id)
    assert lab["queued"]() == [work_id]


@pytest.mark.parametrize("command", ["submit", "estimate"])
def test_without_numpy_and_h5py_the_check_says_what_to_install(tmp_path, monkeypatch, capsys,
                                                              command):
    """Regression: a base install (``UserClient`` alone) gave an ImportError traceback on
    ``submit`` (its check reads the file with qickwork) and ``estimate``."""
    from userclient import cli
    for name in ("qickwork", "qickwork.firmware"):
        monkeypatch.setitem(sys.modules, name, None)  # ``import qickwork`` fails
    conf = tmp_path / "user.conf"
    conf.write_text("[service]\napi_endpoint = http://127.0.0.1:9/dev\n"
                    "[user]\napi_key = qk_x\n")
    conf.chmod(0o600)
    workload = tmp_path / "w.json.gz"
    workload.write_bytes(gzip.compress(b"[]"))
    args = ["--config", str(conf), command, str(workload)]
    code = cli.main(args + (["--device", "d-1"] if command == "submit" else []))
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'qick-queue[user]'" in err, err
    assert len(err.strip().splitlines()) == 1
    assert ("--force" in err) == (command == "submit")
