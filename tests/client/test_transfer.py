"""Streaming uploads and downloads through presigned URLs: headers, checksum, retries."""
from __future__ import annotations

import hashlib
import os

import pytest

from cloudqueue.errors import ChecksumMismatch, Forbidden, ServiceUnavailable
from qickbase.backoff import Backoff
from cloudqueue.transfer import CHUNK_SIZE, download_file, fetch_json, file_sha256, upload_file

from .fakes import FakeServer, Reply

pytestmark = pytest.mark.device310  # the board runs this code on Python 3.10

TRIES = 3
NOSLEEP = {"backoff": Backoff(base=0.001, cap=0.002), "tries": TRIES, "sleep": lambda s: None}


@pytest.fixture
def payload(tmp_path):
    data = os.urandom(5 * CHUNK_SIZE + 123)
    path = tmp_path / "work.bin"
    path.write_bytes(data)
    return path, data


def test_upload_streams_with_length_type_and_checksum(payload):
    path, data = payload
    with FakeServer(lambda seen: Reply(200)) as srv:
        url = srv.url + "/files/workloads/1?Expires=9&Signature=ab&x-amz-checksum-crc32=AAAA"
        done = upload_file(url, path, sha256=True, **NOSLEEP)
        seen = srv.seen[0]
    assert seen.method == "PUT" and seen.body == data
    assert seen.headers["content-type"] == "application/octet-stream"
    assert seen.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in seen.headers
    assert seen.query["x-amz-checksum-crc32"] == ["AAAA"]  # passed on as it is
    assert "authorization" not in seen.headers  # presigned: no credentials
    assert done.size == len(data) and done.sha256 == hashlib.sha256(data).hexdigest()
    assert file_sha256(path) == done.sha256


def test_upload_reads_in_chunks_never_the_whole_file(payload):
    path, data = payload
    reads = []

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def read(self, size=-1):
            block = self.handle.read(size)
            reads.append((size, len(block)))
            return block

        def __getattr__(self, name):
            return getattr(self.handle, name)

    with open(path, "rb") as handle, FakeServer(lambda seen: Reply(200)) as srv:
        upload_file(srv.url + "/u", Spy(handle), **NOSLEEP)
        assert srv.seen[0].body == data
    assert reads and all(0 < size <= CHUNK_SIZE for size, _ in reads)


def test_upload_is_retried_from_the_start_after_a_503(payload):
    path, data = payload
    answers = [Reply(503, {"ErrorMessage": "slow down"}), Reply(200)]
    with FakeServer(lambda seen: answers.pop(0)) as srv:
        done = upload_file(srv.url + "/u", path, sha256=True, **NOSLEEP)
        assert [s.body == data for s in srv.seen] == [True, True]
    assert done.sha256 == hashlib.sha256(data).hexdigest()


def test_upload_errors_are_specific(payload):
    path, _ = payload
    with FakeServer(lambda seen: Reply(400, {"ErrorMessage": "sha differs",
                                             "ErrorKind": "checksum_mismatch"})) as srv:
        with pytest.raises(ChecksumMismatch, match="sha differs"):
            upload_file(srv.url + "/u", path, **NOSLEEP)
    with FakeServer(lambda seen: Reply(403, {"ErrorMessage": "expired",
                                             "ErrorKind": "url_expired"})) as srv:
        with pytest.raises(Forbidden) as err:
            upload_file(srv.url + "/u", path, **NOSLEEP)
        assert err.value.kind == "url_expired" and len(srv.seen) == 1


def test_download_streams_to_temp_and_renames_with_checksum(tmp_path, payload):
    _, data = payload
    dest = tmp_path / "out" / "results.h5"
    with FakeServer(lambda seen: Reply(200, data)) as srv:
        done = download_file(srv.url + "/r", dest, sha256=True, **NOSLEEP)
    assert dest.read_bytes() == data
    assert done.sha256 == hashlib.sha256(data).hexdigest() and done.size == len(data)
    assert [p.name for p in dest.parent.iterdir()] == ["results.h5"]


def test_download_retries_after_a_dropped_connection(tmp_path, payload):
    _, data = payload
    answers = [Reply(200, data, drop_after=CHUNK_SIZE + 7), Reply(200, data)]
    dest = tmp_path / "r.h5"
    with FakeServer(lambda seen: answers.pop(0)) as srv:
        download_file(srv.url + "/r", dest, expected_sha256=hashlib.sha256(data).hexdigest(),
                      **NOSLEEP)
        assert len(srv.seen) == 2
    assert dest.read_bytes() == data


def test_download_that_keeps_dropping_leaves_nothing_behind(tmp_path, payload):
    _, data = payload
    dest = tmp_path / "r.h5"
    with FakeServer(lambda seen: Reply(200, data, drop_after=10)) as srv:
        with pytest.raises(ServiceUnavailable, match="kept dropping"):
            download_file(srv.url + "/r", dest, **NOSLEEP)
        assert len(srv.seen) == TRIES
    assert list(tmp_path.iterdir()) == [tmp_path / "work.bin"]


def test_download_with_a_wrong_checksum_keeps_the_old_file(tmp_path):
    dest = tmp_path / "r.h5"
    dest.write_bytes(b"old")
    with FakeServer(lambda seen: Reply(200, b"new bytes")) as srv:
        with pytest.raises(ChecksumMismatch, match="nothing was saved"):
            download_file(srv.url + "/r", dest, expected_sha256="0" * 64, **NOSLEEP)
    assert dest.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_fetch_json():
    with FakeServer(lambda seen: Reply(200, {"board": "ZCU216"})) as srv:
        assert fetch_json(srv.url + "/c") == {"board": "ZCU216"}
