"""The one atomic write: a file is either its old self or complete, never half written.

A new file is written under a temporary name in the target's own folder (same filesystem,
so the rename is atomic), flushed and fsynced, renamed over the target with
``os.replace``, and the folder is fsynced so the rename itself survives a power cut. On
any error the temporary file is removed and the target is left as it was.

- ``atomic_write(path, data, mode=...)``: bytes or text, whole.
- ``atomic_open(path, mode=...)``: a context manager yielding the open binary file, for
  streamed downloads and uploads; committed on a clean exit, discarded on an exception
  (size limits, checksums and the like stay with the caller: raise to discard).
- ``PendingFile(folder)``: the two steps apart, for a file that is written first and
  renamed into place later (the service's uploads: written, checked, then committed).
- ``replace(source, target)``: a durable rename (a spool folder move): both folders fsynced.
- ``fsync_dir(path)``.

Modes: a new file is created with ``mode`` from its first byte (never chmod after writing,
so a secret is never readable by others, not even for a moment), subject to the umask as
with ``open()``. The default is 0600, private: most files written here hold credentials,
someone's workload or someone's results. A file others must read (a systemd unit, a
board's soccfg, a port file) says ``mode=0o644``.

Temporary names are ``.<name>.<random>.tmp``: hidden, unique per writer, and ending in
``.tmp`` so that crash recovery (the board's spool) can find and remove leftovers.
"""
from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]
PRIVATE = 0o600
TMP_SUFFIX = ".tmp"
#: a folder fsync these refuse says "not supported here", not "the data is lost"
_NO_DIR_FSYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES,
                           errno.EPERM, errno.EISDIR, errno.EBADF})


def fsync_dir(path: PathLike) -> None:
    """Make the entries of folder ``path`` (a rename, a new or removed file) durable.

    Filesystems that cannot fsync a folder (some network and FUSE ones) or a folder this
    process may write but not read are skipped: there is nothing more to do there. Any
    other error (EIO: the disk failed) is raised."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in _NO_DIR_FSYNC:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)


def replace(source: PathLike, target: PathLike) -> None:
    """Rename ``source`` over ``target`` (a file or a folder) and fsync both folders."""
    source_dir = Path(source).absolute().parent
    target_dir = Path(target).absolute().parent
    os.replace(source, target)
    fsync_dir(target_dir)
    if source_dir != target_dir:
        fsync_dir(source_dir)


class PendingFile:
    """A new file being written under a temporary name in ``folder``: ``file`` is open for
    writing (binary); ``commit(target)`` renames it into place durably, ``discard()``
    removes it. ``commit`` after ``discard`` is an error; ``discard`` after ``commit`` is
    nothing (so ``finally: pending.discard()`` is always safe)."""

    def __init__(self, folder: PathLike, *, name: str = "file", mode: int = PRIVATE):
        self.folder = Path(folder)
        while True:
            path = self.folder / f".{name[:180]}.{secrets.token_hex(4)}{TMP_SUFFIX}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                break
            except FileExistsError:  # another writer drew the same name: draw again
                continue
        self.path = path
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self._state = "open"        # open -> synced -> committed | discarded

    def sync(self) -> None:
        """Flush, fsync and close the file: its bytes are on disk (readable at ``path``)."""
        if self._state == "open":
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self._state = "synced"

    def commit(self, target: PathLike) -> None:
        """Sync, rename over ``target``, fsync the folder(s). On error the temp is removed."""
        if self._state not in ("open", "synced"):
            raise ValueError(f"cannot commit {self.path}: it was {self._state}")
        try:
            self.sync()
            replace(self.path, target)
        except BaseException:
            self.discard()
            raise
        self._state = "committed"

    def discard(self) -> None:
        """Close and remove the temporary file (nothing once committed)."""
        if self._state == "committed":
            return
        try:
            self.file.close()
        except OSError:  # a failed flush (disk full) is why we are discarding: go on
            pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._state = "discarded"


@contextmanager
def atomic_open(path: PathLike, *, mode: int = PRIVATE) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` when the block ends cleanly; on an
    exception nothing is left behind and ``path`` is untouched."""
    target = Path(path)
    pending = PendingFile(target.parent, name=target.name, mode=mode)
    try:
        yield pending.file
    except BaseException:
        pending.discard()
        raise
    pending.commit(target)


def atomic_write(path: PathLike, data: Union[bytes, str], *, mode: int = PRIVATE) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically and durably."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, mode=mode) as out:
        out.write(data)
