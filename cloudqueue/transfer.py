"""Moving files through presigned URLs, streaming: never a whole file in memory.

- ``upload_file(url, source)``: ``PUT`` with ``Content-Type: application/octet-stream`` and
  a ``Content-Length``, read in chunks, optionally hashing (SHA-256) on the way; retried
  from the start after a dropped connection or a 5xx.
- ``download_file(url, dest)``: ``GET`` streamed into a temporary file next to ``dest``,
  fsynced and renamed, so ``dest`` is either complete or untouched; optional SHA-256 check;
  with ``max_bytes``, reading stops (and nothing is kept) as soon as the file is larger.
- ``fetch_json(url)``: small JSON documents (the device configuration).

Presigned URLs are passed on exactly as given (query parameters such as
``x-amz-checksum-crc32`` included) and never carry our credentials.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import requests

from cloudqueue.errors import ChecksumMismatch, DownloadTooLarge, QueueError, ServiceUnavailable
from cloudqueue.httpcall import call
from qickbase.atomicfile import atomic_open
from qickbase.backoff import Backoff

CHUNK_SIZE = 1 << 16
DEFAULT_TIMEOUT = 60.0
TRANSFER_BACKOFF = Backoff(base=0.5, cap=30.0)
TRANSFER_TRIES = 5           # the first try included


@dataclass
class Transferred:
    """What went over the wire: byte count and (when asked for) the SHA-256 hex digest."""

    size: int
    sha256: str | None = None
    path: Path | None = None


def file_sha256(path: str | os.PathLike, chunk_size: int = CHUNK_SIZE) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


class _HashingReader:
    """A read-only file view that hashes what is read and reports its length to requests."""

    def __init__(self, handle: IO[bytes], length: int, digest: Any | None):
        self._handle = handle
        self._length = length
        self._digest = digest
        self.sent = 0

    def __len__(self) -> int:  # requests sets Content-Length from this
        return self._length

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK_SIZE
        data = self._handle.read(min(size, CHUNK_SIZE))
        if data:
            self.sent += len(data)
            if self._digest is not None:
                self._digest.update(data)
        return data

    def __iter__(self):  # pragma: no cover - requests uses read() when present
        return iter(lambda: self.read(CHUNK_SIZE), b"")


def upload_file(url: str, source: str | os.PathLike | IO[bytes], *, sha256: bool = False,
                session: requests.Session | None = None,
                timeout: float = DEFAULT_TIMEOUT, backoff: Backoff = TRANSFER_BACKOFF,
               tries: int = TRANSFER_TRIES,
                headers: dict[str, str] | None = None,
                sleep: Callable[[float], None] | None = None,
                what: str = "upload") -> Transferred:
    """PUT ``source`` (a path, or a seekable binary file object) to a presigned URL."""
    session = session or requests.Session()
    owned = not hasattr(source, "read")
    handle: IO[bytes] = open(source, "rb") if owned else source  # type: ignore[arg-type]
    try:
        start = handle.tell()
        handle.seek(0, os.SEEK_END)
        length = handle.tell() - start
        state: dict[str, Any] = {}

        def body() -> _HashingReader:
            handle.seek(start)
            state["reader"] = _HashingReader(handle, length,
                                             hashlib.sha256() if sha256 else None)
            return state["reader"]

        send_headers = {"Content-Type": "application/octet-stream",
                        "Content-Length": str(length)}
        send_headers.update(headers or {})
        extra = {"sleep": sleep} if sleep is not None else {}
        answer = call(session, "PUT", url, what=what, timeout=timeout, backoff=backoff,
                      tries=tries, safe=True, body=body, headers=send_headers, **extra)
        answer.close()
        reader: _HashingReader = state["reader"]
        if reader.sent != length:
            raise ServiceUnavailable(f"{what}: the file changed while it was being sent "
                                     f"({reader.sent} of {length} bytes)", kind="short_upload")
        digest = reader._digest.hexdigest() if reader._digest is not None else None
        return Transferred(size=length, sha256=digest)
    except OSError as exc:
        raise QueueError(f"{what}: cannot read {getattr(handle, 'name', 'the file')}: "
                         f"{exc.strerror or exc}", kind="local_io") from None
    finally:
        if owned:
            handle.close()


def download_file(url: str, dest: str | os.PathLike, *, sha256: bool = False,
                  expected_sha256: str | None = None,
                  session: requests.Session | None = None,
                  timeout: float = DEFAULT_TIMEOUT, backoff: Backoff = TRANSFER_BACKOFF,
                  tries: int = TRANSFER_TRIES,
                  sleep: Callable[[float], None] | None = None,
                  chunk_size: int = CHUNK_SIZE, what: str = "download",
                  max_bytes: int | None = None) -> Transferred:
    """GET a presigned URL into ``dest`` (``qickbase.atomicfile.atomic_open``: temp file,
    fsync, rename; retried from scratch).

    ``max_bytes``: refuse a larger file (``DownloadTooLarge``, whose ``size`` is the announced
    length or at least ``max_bytes + 1``) before or while reading it, so a huge file never
    fills the disk; nothing is left behind.
    """
    session = session or requests.Session()
    target = Path(dest).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    want_hash = sha256 or expected_sha256 is not None
    extra = {"sleep": sleep} if sleep is not None else {}
    attempt = 0
    while True:
        digest = hashlib.sha256() if want_hash else None
        size = 0
        try:
            with atomic_open(target) as out:  # an exception below leaves nothing behind
                answer = call(session, "GET", url, what=what, timeout=timeout,
                              backoff=backoff, tries=tries, safe=True, stream=True, **extra)
                with answer:
                    expected_length = _announced_length(answer.headers)
                    if (max_bytes is not None and expected_length is not None
                            and expected_length > max_bytes):
                        raise _too_large(what, max_bytes, expected_length)
                    for block in answer.iter_content(chunk_size):
                        size += len(block)
                        if max_bytes is not None and size > max_bytes:
                            raise _too_large(what, max_bytes, None)
                        out.write(block)
                        if digest is not None:
                            digest.update(block)
                if expected_length is not None and expected_length != size:
                    raise requests.ConnectionError(f"got {size} of {expected_length} bytes")
                hexdigest = digest.hexdigest() if digest is not None else None
                if expected_sha256 is not None and hexdigest != expected_sha256.lower():
                    raise ChecksumMismatch(f"{what}: the file's SHA-256 is {hexdigest}, not "
                                           f"the announced {expected_sha256}; nothing was "
                                           "saved")
            return Transferred(size=size, sha256=hexdigest, path=target)
        except requests.RequestException as exc:
            # The connection dropped while the body was streaming: start again.
            attempt += 1
            if attempt >= tries:
                raise ServiceUnavailable(f"{what}: the connection kept dropping "
                                         f"({type(exc).__name__}); try again later",
                                         kind="connection") from None
            (sleep or _sleep)(backoff.delay(attempt - 1))
        except OSError as exc:
            raise QueueError(f"{what}: cannot write {target}: {exc.strerror or exc}",
                             kind="local_io") from None


def _announced_length(headers: Any) -> int | None:
    """The body's announced length; None when absent or nonsense (the count while reading
    still applies to the size limit)."""
    try:
        return int(headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _too_large(what: str, max_bytes: int, size: int | None) -> DownloadTooLarge:
    told = f"{size} bytes" if size is not None else f"more than {max_bytes} bytes"
    error = DownloadTooLarge(f"{what}: the file is {told}, over the limit of {max_bytes} bytes; "
                         "nothing was saved", kind="too_large")
    error.size = size if size is not None else max_bytes + 1
    return error


def fetch_json(url: str, *, session: requests.Session | None = None,
               timeout: float = DEFAULT_TIMEOUT, backoff: Backoff = TRANSFER_BACKOFF,
               tries: int = TRANSFER_TRIES,
               what: str = "download") -> Any:
    """GET a small JSON document from a presigned URL."""
    session = session or requests.Session()
    answer = call(session, "GET", url, what=what, timeout=timeout, backoff=backoff,
                  tries=tries, safe=True)
    try:
        return answer.json()
    except ValueError:
        raise QueueError(f"{what}: the file is not valid JSON", kind="invalid_json") from None


def _sleep(seconds: float) -> None:
    import time
    time.sleep(seconds)


