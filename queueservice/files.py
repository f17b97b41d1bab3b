"""The service's files: workloads, results and device configurations, in one of two stores.

``LocalFiles`` (the default) keeps them on disk under ``DIR/files``; ``S3Files``
(``serve --files s3://bucket/prefix``) keeps them as objects under ``prefix/`` in an S3
bucket or an S3-compatible store. Both share one interface (``FileStore``): what the file
routes, the estimates, the mock devices and the admin need.

An upload is always streamed first to a temporary file in ``DIR/files/tmp`` (in chunks,
never held in memory), its size limited while it streams, hashed on the way and fsynced
(``stage``); only a whole file that fit the limit is then put in place (``commit``):
locally by rename (``qickbase.atomicfile.PendingFile``: ``os.replace`` and an fsync of the
folders), in S3 by a streamed upload from that temporary file (multipart past
``S3_PART_BYTES``), which S3 makes visible whole or not at all. Either way a crash leaves
the old file or the new one, never half of one.

The presigned URLs clients get stay the service's own (``routes_files``): a file streams
through the service into the store, so the original clients work unchanged and a file's
arrival drives the state on the replica that received it. (S3's own presigned URLs would
spare the service the bytes, but need an arrival notification from the bucket: a later
option.)
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from starlette.responses import FileResponse, Response, StreamingResponse

from cloudqueue.errors import NotFound, QueueError
from qickbase.atomicfile import PendingFile
from queueservice.errors import PayloadTooLarge, StorageUnavailable

log = logging.getLogger("qick_queue")

KINDS = ("workloads", "results", "configs")
#: files the store keeps that no file URL reaches: uploads the web portal holds until their
#: user confirms them (``portal.uploads``)
STAGING = "staging"
_UUID = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_KEY = re.compile(rf"^(workloads|results|configs)/{_UUID}$")
_STORED = re.compile(rf"^(workloads|results|configs|{STAGING})/{_UUID}$")
CHUNK_BYTES = 1 << 20
#: S3 uploads past this size go in parts of this size (streamed from the staged file)
S3_PART_BYTES = 8 * 2**20
#: how long an S3 request may take to connect, and then wait for each answer's bytes
S3_CONNECT_SECONDS = 10
S3_READ_SECONDS = 60
#: locks that keep writes of one key one at a time (a key picks one by its hash)
WRITE_LOCKS = 64


def parse_key(key: str) -> tuple[str, str]:
    """``workloads/{WorkId}`` -> ("workloads", WorkId); NotFound for anything else."""
    match = _KEY.match(key)
    if not match:
        raise NotFound(f"no file {key!r}")
    return match.group(1), match.group(2)


def stored_key(key: str) -> tuple[str, str]:
    """``parse_key``, and ``staging/{id}`` too: the keys the store itself takes."""
    match = _STORED.match(key)
    if not match:
        raise NotFound(f"no file {key!r}")
    return match.group(1), match.group(2)


@dataclass
class Staged:
    """An uploaded file waiting in the temp folder to be put in place."""

    pending: PendingFile
    size: int
    sha256: str

    @property
    def path(self) -> Path:
        return self.pending.path


class FileStore(ABC):
    """Where the service's files live. Uploads are staged in ``tmp`` (a local folder) by
    the same code for every store; the rest is the store's own."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self._write_locks = [threading.Lock() for _ in range(WRITE_LOCKS)]

    def writing(self, key: str) -> threading.Lock:
        """The lock to hold from "may this key be written?" until its state change is
        applied: two uploads of one key in this process never interleave (a workload file's
        first upload is the one kept), and other keys never wait on it."""
        return self._write_locks[hash(key) % WRITE_LOCKS]

    def create(self) -> None:
        """Make what the store needs (idempotent); clears uploads a crash left half-written."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.glob("*"):
            leftover.unlink(missing_ok=True)

    async def stage(self, chunks: AsyncIterator[bytes], max_bytes: int) -> Staged:
        """Stream ``chunks`` into a temp file; PayloadTooLarge (413) past ``max_bytes``."""
        pending = PendingFile(self.tmp, name="upload")
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"the file is larger than this service's limit of "
                                   f"{max_bytes} bytes: make it smaller or ask the admin "
                                   f"to raise --max-upload-mb")
                digest.update(chunk)
                pending.file.write(chunk)
            pending.sync()
        except BaseException:
            pending.discard()
            raise
        return Staged(pending, size, digest.hexdigest())

    def discard(self, staged: Staged) -> None:
        """Remove a staged upload (nothing once committed)."""
        staged.pending.discard()

    def fetch(self, key: str) -> Staged:
        """A stored file copied (in chunks) to a staged upload in ``tmp``, to be put in
        place under another key (``commit``); NotFound if absent."""
        pending = PendingFile(self.tmp, name="fetched")
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in self.chunks(key):
                size += len(chunk)
                digest.update(chunk)
                pending.file.write(chunk)
            pending.sync()
        except BaseException:
            pending.discard()
            raise
        return Staged(pending, size, digest.hexdigest())

    @abstractmethod
    def chunks(self, key: str) -> Iterator[bytes]:
        """The stored file's bytes, in chunks; NotFound if absent."""

    @abstractmethod
    def commit(self, staged: Staged, key: str) -> None:
        """Put a staged upload in place as ``key``, whole or not at all."""

    @abstractmethod
    def sha256(self, key: str) -> str | None:
        """The SHA-256 of the stored file, None if absent."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The stored file's size in bytes, None if absent."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    @abstractmethod
    def read_text(self, key: str) -> str | None:
        """A small file's text (a device configuration), None if absent."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """A file's bytes, None if absent: for files the caller knows are small (check
        ``size`` first; the portal's quick look at results)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file (nothing if absent)."""

    @abstractmethod
    def response(self, key: str, filename: str, byte_range: str | None = None) -> Response:
        """The file streamed as a download named ``filename`` (206 with the part a
        ``Range: bytes=...`` header asks for); NotFound if absent."""


class LocalFiles(FileStore):
    """Files on disk under ``root`` (``DIR/files``): one folder per kind."""

    def __init__(self, root: Path):
        self.root = Path(root)
        super().__init__(self.root / "tmp")

    def create(self) -> None:
        for name in (*KINDS, STAGING):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        super().create()

    def path(self, key: str) -> Path:
        kind, name = stored_key(key)
        return self.root / kind / name

    def chunks(self, key: str) -> Iterator[bytes]:
        try:
            handle = open(self.path(key), "rb")
        except FileNotFoundError:
            raise NotFound(f"the file {key} has not been uploaded") from None
        with handle:
            yield from iter(lambda: handle.read(CHUNK_BYTES), b"")

    def commit(self, staged: Staged, key: str) -> None:
        """Move a staged upload into place atomically, and make the rename durable."""
        staged.pending.commit(self.path(key))

    def sha256(self, key: str) -> str | None:
        """Read in chunks, never whole."""
        digest = hashlib.sha256()
        try:
            with open(self.path(key), "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()

    def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    def read_text(self, key: str) -> str | None:
        try:
            return self.path(key).read_text()
        except FileNotFoundError:
            return None

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def response(self, key: str, filename: str, byte_range: str | None = None) -> Response:
        """Starlette's FileResponse reads the request's Range header itself."""
        path = self.path(key)
        if not path.is_file():
            raise NotFound(f"the file {key} has not been uploaded")
        return FileResponse(path, media_type="application/octet-stream", filename=filename)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix/"); QueueError if not one."""
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?", url)
    if not match:
        raise QueueError(f"--files {url!r} is not s3://BUCKET[/PREFIX] (a bucket name is 3 "
                         "to 63 lower-case letters, digits, dots and hyphens): give the "
                         "bucket's name, or leave --files out to keep files in the data folder")
    prefix = (match.group(2) or "").strip("/")
    return match.group(1), prefix + "/" if prefix else ""


class S3Files(FileStore):
    """Files as objects ``{prefix}{kind}/{id}`` in an S3 bucket, reached with the standard
    AWS configuration (environment, ``~/.aws``; ``AWS_ENDPOINT_URL`` for an S3-compatible
    store). Each object carries its SHA-256 as metadata (``x-amz-meta-sha256``), so the
    immutability checks do not read it back. A store that cannot be reached answers
    ``StorageUnavailable`` (503) with why; the state changes only after a whole object is
    in place."""

    def __init__(self, url: str, tmp: Path, client: Any = None):
        # boto3 is the S3 store's alone: the default (local) service never imports it
        import boto3
        from boto3.exceptions import Boto3Error
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        super().__init__(tmp)
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        # retries as the AWS configuration says (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE)
        self.client = client or boto3.client("s3", config=Config(
            connect_timeout=S3_CONNECT_SECONDS, read_timeout=S3_READ_SECONDS))
        self._transfer = TransferConfig(multipart_threshold=S3_PART_BYTES,
                                        multipart_chunksize=S3_PART_BYTES, max_concurrency=4)
        self._client_error = ClientError
        self._store_errors = (BotoCoreError, Boto3Error, ClientError)

    def _object(self, key: str) -> str:
        stored_key(key)
        return self.prefix + key

    def _unavailable(self, exc: Exception, doing: str) -> StorageUnavailable:
        return StorageUnavailable(f"the file store ({self.url}) failed while {doing} "
                                  f"({type(exc).__name__}: {exc}): try again shortly; the "
                                  "admin can find the details in the service's log")

    def _missing(self, exc: Exception) -> bool:
        return (isinstance(exc, self._client_error)
                and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey",
                                                                  "NotFound"))

    def create(self) -> None:
        """Check the bucket answers these credentials; QueueError naming it if not."""
        super().create()
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._client_error as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise QueueError(f"the S3 bucket {self.bucket!r} (--files {self.url}) does "
                                 "not exist: create it, or name another bucket") from None
            if code in ("403", "AccessDenied", "Forbidden"):
                raise QueueError(f"access to the S3 bucket {self.bucket!r} is refused to "
                                 "these AWS credentials: allow them s3:ListBucket on it and "
                                 "s3:GetObject, s3:PutObject, s3:DeleteObject under "
                                 f"{self.prefix or '/'}") from None
            raise QueueError(f"the S3 bucket {self.bucket!r} cannot be used ({code}): "
                             "check the bucket and the AWS credentials") from None
        except self._store_errors as exc:
            raise QueueError(f"the S3 bucket {self.bucket!r} cannot be reached "
                             f"({type(exc).__name__}: {exc}): check the AWS credentials "
                             "and region (AWS_PROFILE, AWS_ACCESS_KEY_ID...) and, for an "
                             "S3-compatible store, AWS_ENDPOINT_URL") from None

    def commit(self, staged: Staged, key: str) -> None:
        """Upload the staged file (``upload``), then remove it."""
        self.upload(staged.path, key, staged.sha256)
        staged.pending.discard()

    def upload(self, path: Path, key: str, sha256: str) -> None:
        """Store the local file ``path`` (whose SHA-256 is ``sha256``) as ``key``, streamed:
        one PUT, or parts past S3_PART_BYTES (a failed multipart upload is aborted; nothing
        becomes visible). The local file stays."""
        try:
            self.client.upload_file(str(path), self.bucket, self._object(key),
                                    ExtraArgs={"Metadata": {"sha256": sha256},
                                               "ContentType": "application/octet-stream"},
                                    Config=self._transfer)
        except self._store_errors as exc:
            log.warning("file store: storing %s failed: %s: %s", key, type(exc).__name__, exc)
            raise self._unavailable(exc, f"storing {key}") from None

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except self._store_errors as exc:
            if self._missing(exc):
                return None
            raise self._unavailable(exc, f"looking up {key}") from None

    def sha256(self, key: str) -> str | None:
        head = self._head(key)
        if head is None:
            return None
        recorded = head.get("Metadata", {}).get("sha256")
        if recorded:
            return recorded
        digest = hashlib.sha256()  # an object put there by other means: hash it, streamed
        for chunk in self._chunks(self._whole(key)):
            digest.update(chunk)
        return digest.hexdigest()

    def size(self, key: str) -> int | None:
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def _get(self, key: str, byte_range: str = "") -> dict | None:
        """S3's answer (its ``Body`` a stream); None when nothing is in ``byte_range``."""
        ranged = {"Range": byte_range} if byte_range else {}
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._object(key), **ranged)
        except self._store_errors as exc:
            if self._missing(exc):
                raise NotFound(f"the file {key} has not been uploaded") from None
            if (isinstance(exc, self._client_error)
                    and exc.response.get("Error", {}).get("Code") == "InvalidRange"):
                return None
            raise self._unavailable(exc, f"reading {key}") from None

    def chunks(self, key: str) -> Iterator[bytes]:
        return self._chunks(self._whole(key))

    def _whole(self, key: str) -> dict:
        answer = self._get(key)
        assert answer is not None  # no range asked: none refused
        return answer

    def _chunks(self, answer: dict) -> Iterator[bytes]:
        body = answer["Body"]
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()

    def read_text(self, key: str) -> str | None:
        data = self.read_bytes(key)
        return None if data is None else data.decode()

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return b"".join(self._chunks(self._whole(key)))
        except NotFound:
            return None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._object(key))
        except self._store_errors as exc:
            raise self._unavailable(exc, f"deleting {key}") from None

    def response(self, key: str, filename: str, byte_range: str | None = None) -> Response:
        """One range (``bytes=A-B``, ``A-``, ``-N``) is asked of S3; anything else (several
        ranges, a malformed header) is ignored and the whole file sent, as HTTP allows."""
        single = byte_range.strip() if byte_range else ""
        if not _SINGLE_RANGE.fullmatch(single):
            single = ""
        answer = self._get(key, single)
        if answer is None:
            return Response(status_code=416,
                            headers={"Content-Range": f"bytes */{self.size(key)}"})
        headers = {"Content-Length": str(answer["ContentLength"]), "Accept-Ranges": "bytes",
                   "Content-Disposition": f'attachment; filename="{filename}"'}
        if single and answer.get("ContentRange"):
            headers["Content-Range"] = answer["ContentRange"]
        return StreamingResponse(self._chunks(answer), status_code=206 if single else 200,
                                 media_type="application/octet-stream", headers=headers)


_SINGLE_RANGE = re.compile(r"bytes=(\d+-\d*|-\d+)")


def open_files(files: str | None, files_path: Path) -> FileStore:
    """The store ``--files`` names (``s3://bucket/prefix``), or the data folder's own
    (``files_path``) when None; staged uploads always go to ``files_path/tmp``."""
    if not files:
        return LocalFiles(files_path)
    if not files.startswith("s3://"):
        raise QueueError(f"--files {files!r} is not s3://BUCKET[/PREFIX]: give an S3 URL, or "
                         "leave --files out to keep files in the data folder")
    return S3Files(files, Path(files_path) / "tmp")
