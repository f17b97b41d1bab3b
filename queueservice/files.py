"""Files on disk: workloads, results and device configurations, under ``DIR/files``.

An upload is streamed to a temporary file in ``tmp/`` in chunks (never held in memory), its
size limited while it streams, hashed on the way, fsynced, and only then renamed into place
(``qickbase.atomicfile.PendingFile``: ``os.replace`` and an fsync of the folders), so a
crash leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from cloudqueue.errors import NotFound
from qickbase.atomicfile import PendingFile
from queueservice.errors import PayloadTooLarge

KINDS = ("workloads", "results", "configs")
_KEY = re.compile(r"^(workloads|results|configs)/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
                  r"[0-9a-f]{4}-[0-9a-f]{12})$")


def parse_key(key: str) -> tuple[str, str]:
    """``workloads/{WorkId}`` -> ("workloads", WorkId); NotFound for anything else."""
    match = _KEY.match(key)
    if not match:
        raise NotFound(f"no file {key!r}")
    return match.group(1), match.group(2)


@dataclass
class Staged:
    """An uploaded file waiting in the temp folder for its rename."""

    pending: PendingFile
    size: int
    sha256: str

    @property
    def path(self) -> Path:
        return self.pending.path


class FileStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    def create(self) -> None:
        for name in (*KINDS, "tmp"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def clear_tmp(self) -> None:
        """Remove uploads a crash left half-written."""
        for leftover in self.tmp.glob("*"):
            leftover.unlink(missing_ok=True)

    def path(self, key: str) -> Path:
        kind, name = parse_key(key)
        return self.root / kind / name

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def sha256(self, key: str) -> str | None:
        """The SHA-256 of the stored file (read in chunks, never whole), None if absent."""
        digest = hashlib.sha256()
        try:
            with open(self.path(key), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()

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

    def commit(self, staged: Staged, key: str) -> None:
        """Move a staged upload into place atomically, and make the rename durable."""
        staged.pending.commit(self.path(key))

    def discard(self, staged: Staged) -> None:
        """Remove a staged upload (nothing once committed)."""
        staged.pending.discard()
