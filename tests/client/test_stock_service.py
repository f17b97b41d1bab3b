"""The user client against ``qick-queue serve --stock-protocol``: an unknown WorkId or
DeviceId (the stock handler's 500) is "no such ..." (exit 4) and ``wait`` stops; a DONE
workload whose results file records FAILED or CANCELLED is shown so (exit 1)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cloudqueue.auth import ApiKeyAuth
from cloudqueue.client import QueueClient
from cloudqueue.errors import NotFound, ServiceUnavailable
from cloudqueue.transfer import upload_file
from tests.server.api import Api, World, submit
from userclient.client import UserClient

from .fakes import FakeServer, Reply

CLI = [sys.executable, "-m", "userclient.cli"]
MISSING_WORK = "Cannot destructure property 'WorkBucket' of 'Work' as it is undefined."


@pytest.fixture
def stock(queue_service_factory, tmp_path):
    service = queue_service_factory(stock_protocol=True, prefix="/dev")
    world = World(service)
    answer = world.admin.post("/users", json={"Email": "ada@lab.test", "FullName": "Ada"})
    key = answer.json()["ApiKey"]
    conf = tmp_path / "ada.conf"
    conf.write_text(f"[service]\napi_endpoint = {service.url}\n[user]\napi_key = {key}\n")
    return world, key, conf


def cli(conf: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    return subprocess.run(CLI + ["--config", str(conf), *args], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_an_unknown_workload_or_device_is_not_found_and_wait_stops(stock):
    world, key, conf = stock
    unknown = str(uuid.uuid4())
    for command in (["status", unknown], ["wait", unknown, "--interval", "0.2"]):
        done = cli(conf, *command)
        assert done.returncode == 4, (command, done.stderr)
        assert f"no such workload {unknown} (or not visible to you)" in done.stderr
        assert "try again later" not in done.stderr and "Traceback" not in done.stderr
    device = cli(conf, "device", unknown)
    assert device.returncode == 4 and f"no such device {unknown}" in device.stderr
    with pytest.raises(NotFound):
        user = UserClient(client=QueueClient(world.service.url, ApiKeyAuth(key)), out=None)
        user.wait_until_done(unknown)


@pytest.mark.parametrize("capabilities", [
    Reply(200, {"Service": "qick-queue", "Version": "0.1.0", "Features": []}),
    Reply(403, {"message": "Missing Authentication Token"})])
def test_only_the_stock_handlers_own_500_on_a_stock_service_means_not_found(capabilities):
    """Our own service never answers that message; any other 500 stays "try again later"."""
    stock = capabilities.status == 403

    def handler(seen):
        if seen.path == "/capabilities":
            return capabilities
        if seen.path == "/workloads/w-missing":
            return Reply(500, {"ErrorMessage": MISSING_WORK})
        return Reply(500, {"ErrorMessage": "Rate exceeded"})

    with FakeServer(handler) as srv:
        client = QueueClient(srv.url, ApiKeyAuth("k"), tries=1)
        if stock:
            with pytest.raises(NotFound, match="no such workload w-missing"):
                client.get_workload("w-missing")
        else:
            with pytest.raises(ServiceUnavailable):
                client.get_workload("w-missing")
        with pytest.raises(ServiceUnavailable, match="try again later"):
            client.get_workload("w-other")


def finish_as_a_stock_board(world: World, device, work_id: str, results: Path) -> None:
    """What a board does on a stock service: take the work, ask for the upload URL with an
    empty body, upload the results file."""
    board = QueueClient(world.service.url, ApiKeyAuth(device.api.token))
    assert board.get_work(device.id)["WorkId"] == work_id
    upload_file(board.results_upload_url(device.id, work_id), results)


def results_file(path: Path, status: str | None, kind: str = "", message: str = "") -> Path:
    """A results file as the board writes it (``status`` None: the original client's,
    without attributes); RUNNING is one whose writer died after one of two programs."""
    import h5py
    import numpy as np
    from qickwork.results import ResultsWriter
    if status is None:
        with h5py.File(path, "w", track_order=True) as f:
            f.create_group("data", track_order=True).create_group("0")["avg"] = np.zeros(2)
        return path
    writer = ResultsWriter(path, programs_total=2, work_id="w")
    writer.add(0, acqtype="accumulated", seconds=0.1, avg=[np.zeros((1, 2))])
    if status != "RUNNING":
        writer.finish(status, seconds=0.2, error_kind=kind, error_message=message)
    writer.close()
    return path


@pytest.mark.parametrize("recorded, shown, exit_code", [
    (("FAILED", "invalid_workload", "not gzip"), ("FAILED", "invalid_workload", "not gzip"), 1),
    (("CANCELLED", "cancelled", "cancelled on request"),
     ("CANCELLED", "cancelled", "cancelled on request"), 1),
    (("RUNNING",), ("FAILED", "unfinished", "programs done 1 of 2"), 1),
    (("DONE",), ("DONE", None, None), 0),
    ((None,), ("DONE", None, None), 0),
])
def test_status_and_wait_show_what_the_board_recorded(stock, tmp_path, recorded, shown,
                                                      exit_code):
    world, key, conf = stock
    device = world.device()
    user = UserClient(client=QueueClient(world.service.url, ApiKeyAuth(key)), out=None)
    work_id = submit(Api(world.service.url, key), device.id)
    finish_as_a_stock_board(world, device, work_id,
                            results_file(tmp_path / "r.h5", *recorded))
    assert user.status(work_id).WorkStatus == "DONE"  # all the stock service knows

    out = io.StringIO()
    user.out = out
    final = user.wait_until_done(work_id, progress=True, timeout=20)
    status, kind, message = shown
    assert (final.WorkStatus, final.ErrorKind) == (status, kind)
    if message is not None:
        assert message in final.ErrorMessage
    # what the notebook shows ends with the outcome, not only the stock service's DONE
    assert out.getvalue().splitlines()[-1].startswith(f"workload is {status}")
    for command in ("status", "wait"):
        done = cli(conf, command, work_id)
        assert done.returncode == exit_code, (command, done.stdout, done.stderr)
        assert f"WorkStatus        {status}" in done.stdout
        if message is not None:
            assert message in done.stdout and "the results file" in done.stdout


def test_our_own_service_shows_its_status_without_downloading(queue_service, tmp_path):
    world = World(queue_service)
    device = world.device()
    work_id = submit(world.admin, device.id)
    board = QueueClient(queue_service.url, ApiKeyAuth(device.api.token))
    board.get_work(device.id)
    upload_file(board.results_upload_url(device.id, work_id),
                results_file(tmp_path / "r.h5", "FAILED", "x", "recorded only in the file"))
    user = UserClient(client=QueueClient(queue_service.url, ApiKeyAuth(queue_service.admin_key)),
                      out=None)
    work = user.status(work_id)
    assert user.final_status(work) is work  # our service says it itself: no download
