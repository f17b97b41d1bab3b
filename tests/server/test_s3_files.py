"""The service with its files in S3 (``serve --files s3://bucket/prefix``), against moto's
server mode (a real HTTP S3 endpoint): where the objects go, a restart, the endpoint going
away mid-upload, and the start-up errors. The file contract itself runs against both stores
(``files_world`` in test_contract.py and test_bad_input.py)."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import boto3
import pytest
import requests
from botocore.stub import Stubber

from cloudqueue.errors import QueueError
from queueservice.datadir import init_data_dir
from queueservice.files import S3Files, parse_s3_url
from queueservice.settings import DEFAULT_ADMIN_EMAIL
from tests.server.api import World, assert_error, put_file, status, submit
from tests.server.conftest import MotoS3

BIG = 9 * 2**20  # past S3_PART_BYTES: a multipart upload


def test_files_are_objects_under_the_prefix_and_a_restart_keeps_them(queue_service_factory,
                                                                      s3: MotoS3):
    bucket = s3.new_bucket()
    service = queue_service_factory(files=f"s3://{bucket}/lab/one", env=s3.env)
    world = World(service)
    device = world.device()
    user, _ = world.user()
    assert put_file(device.heartbeat().json()["UploadUrl"], b'{"soccfg": 2}').status_code == 200
    big = bytes(range(256)) * (BIG // 256)
    work = submit(user, device.id, big)
    assert device.next_work().json()["WorkId"] == work
    assert put_file(device.report(work).json()["UploadUrl"], b"results").status_code == 200

    assert s3.keys(bucket) == sorted([f"lab/one/configs/{device.id}",
                                      f"lab/one/workloads/{work}", f"lab/one/results/{work}"])
    head = s3.client.head_object(Bucket=bucket, Key=f"lab/one/workloads/{work}")
    assert head["ContentLength"] == BIG and head["ETag"].endswith('-2"')  # two parts
    assert head["Metadata"]["sha256"] == hashlib.sha256(big).hexdigest()
    for kind in ("configs", "workloads", "results", "tmp"):
        assert list((service.data_dir / "files" / kind).glob("*")) == []

    service.restart()
    done = status(user, work)
    assert done["WorkStatus"] == "DONE"
    assert requests.get(done["WorkloadUrl"], timeout=30).content == big
    assert requests.get(done["WorkloadResultUrl"], timeout=30).content == b"results"
    config_url = user.get(f"/devices/{device.id}").json()["DeviceConfigurationUrl"]
    assert requests.get(config_url, timeout=30).content == b'{"soccfg": 2}'


@pytest.fixture
def own_s3() -> Iterator[MotoS3]:
    """An S3 endpoint this test may stop and start again (on the same port)."""
    stores = [MotoS3()]
    yield stores[0]
    stores[0].stop()


def test_s3_going_away_mid_upload_is_503_with_why_and_nothing_is_stored(
        queue_service_factory, own_s3: MotoS3):
    bucket = own_s3.new_bucket()
    service = queue_service_factory(files=f"s3://{bucket}/q", env=own_s3.env)
    world = World(service)
    device = world.device()
    user, _ = world.user()
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    half = b"z" * (BIG // 2)

    def body() -> Iterator[bytes]:
        yield half
        own_s3.stop()  # the store goes away while the file is on its way
        yield half

    answer = requests.put(created["UploadUrl"], data=body(), timeout=60,
                          headers={"Content-Type": "application/octet-stream"})
    error = assert_error(answer, 503, "storage_unavailable")
    assert f"s3://{bucket}/q" in error["ErrorMessage"] and "try again" in error["ErrorMessage"]
    assert status(user, created["WorkId"])["WorkStatus"] == "CREATED"
    assert device.next_work().json() == []
    assert list((service.data_dir / "files" / "tmp").iterdir()) == []

    back = MotoS3(port=own_s3.port)  # the same endpoint again, with what it held
    own_s3.server = back.server
    assert back.keys(bucket) == []
    assert back.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert put_file(created["UploadUrl"], half + half).status_code == 200  # the retry
    assert status(user, created["WorkId"])["WorkStatus"] == "READY"
    assert back.keys(bucket) == [f"q/workloads/{created['WorkId']}"]
    log = service.log_path.read_text()
    assert own_s3.env["AWS_SECRET_ACCESS_KEY"] not in log and "Traceback" not in log


def _serve(data: Path, files: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    if not (data / "queue.db").exists():
        init_data_dir(data, port=0, admin_email=DEFAULT_ADMIN_EMAIL)
    return subprocess.run([sys.executable, "-m", "queueservice.cli", "serve", "--data",
                           str(data), "--port", "0", "--files", files],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_a_missing_bucket_stops_the_start_with_one_line_naming_it(tmp_path: Path, s3: MotoS3):
    run = _serve(tmp_path / "q", "s3://no-such-bucket/x", s3.env)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "qick-queue: the S3 bucket 'no-such-bucket' (--files s3://no-such-bucket/x) does "
        "not exist: create it, or name another bucket"]


def test_an_unreachable_endpoint_stops_the_start_with_what_to_check(tmp_path: Path,
                                                                     s3: MotoS3):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        run = _serve(tmp_path / "q", "s3://some-bucket",
                     {**s3.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert "'some-bucket' cannot be reached" in line and "AWS_ENDPOINT_URL" in line
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in run.stderr


def test_a_refused_bucket_says_which_permissions_to_give(tmp_path: Path):
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k",
                          aws_secret_access_key="s")
    with Stubber(client) as stub:  # S3's own answer to credentials it refuses
        stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
        with pytest.raises(QueueError, match=r"access to the S3 bucket 'locked' is refused.*"
                                             r"s3:PutObject"):
            S3Files("s3://locked/p", tmp_path / "tmp", client=client).create()


@pytest.mark.parametrize("url", ["s3://", "s3://UPPER/x", "s3://a/x", "/srv/files",
                                 "gs://bucket/x"])
def test_a_files_url_that_is_not_s3_bucket_prefix_is_refused(tmp_path: Path, url: str):
    run = _serve(tmp_path / "q", url, {})
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"qick-queue: --files {url!r} is not s3://BUCKET[/PREFIX]")


def test_an_s3_url_names_the_bucket_and_a_folder_like_prefix():
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")
    assert parse_s3_url("s3://my.bucket-1/lab/one/") == ("my.bucket-1", "lab/one/")


def test_deleting_a_device_deletes_its_configuration_object(queue_service_factory, s3: MotoS3):
    bucket = s3.new_bucket()
    service = queue_service_factory(files=f"s3://{bucket}/p", env=s3.env)
    world = World(service)
    device = world.device()
    assert put_file(device.heartbeat().json()["UploadUrl"], b"{}").status_code == 200
    assert s3.keys(bucket) == [f"p/configs/{device.id}"]
    assert world.admin.call("DELETE", f"/devices/{device.id}").status_code == 200
    assert s3.keys(bucket) == []
