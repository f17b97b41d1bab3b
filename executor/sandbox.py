"""The executor's sandbox, set up by the executor itself at its start (no ``preexec_fn``).

What each step does, and what happens where the platform does not allow it:

- ``die_with_parent``: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` so the executor never outlives
  its supervisor (Linux only; elsewhere the bus heartbeat timeout stops it instead).
- ``own_process_group``: the supervisor starts it with ``start_new_session=True``; this
  checks it and makes one if not, so the supervisor can signal the whole group.
- ``set_limits``: address space (``RLIMIT_AS``), no core dumps (``RLIMIT_CORE`` 0), open
  files (``RLIMIT_NOFILE``).
- ``isolate_network``: ``unshare(CLONE_NEWNET)`` gives the process a private network
  namespace with only a down loopback: no route anywhere. It needs root or
  ``CAP_SYS_ADMIN`` (the systemd unit runs as root to reach /dev/mem). Without it the call
  fails with EPERM, the executor carries on *without* network isolation, says so in its
  hello and in ``/status`` (``"network": "shared (...)"``), and the admin can add the unit's
  ``RestrictAddressFamilies``/``IPAddressDeny`` instead. The ZeroMQ bus uses an ``ipc://``
  socket path, which works across network namespaces.
- The environment is not set here: the supervisor starts the executor with an
  allow-listed one, no credential in it (``supervisor.childenv``).
- ``BoardLock``: an exclusive ``flock`` on the board's lock file. Anything else that drives
  the board (a notebook) should take the same lock::

      with BoardLock("/run/qick/board.lock"):
          soc = QickSoc()
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import resource
import signal
from typing import Dict, Optional

from boardcore.errors import BoardBusy, SandboxError

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def die_with_parent(expected_parent: Optional[int] = None, sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` when the parent dies. Returns False when the parent
    is already gone (the caller should exit) or prctl is unavailable."""
    try:
        if _libc().prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # the parent may have died before prctl: then we were re-parented already
    return expected_parent is None or os.getppid() == expected_parent


def own_process_group() -> int:
    """Make sure this process leads its own process group; return the group id."""
    if os.getpgid(0) != os.getpid():
        try:
            os.setsid()
        except OSError:
            os.setpgid(0, 0)
    return os.getpgid(0)


def set_limits(address_space: int = 0, open_files: int = 256) -> Dict[str, int]:
    """Apply the executor's resource limits (0 = leave unlimited). Returns what was set."""
    applied = {}
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        applied["core"] = 0
        if open_files:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            soft = open_files if hard == resource.RLIM_INFINITY else min(open_files, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, soft))
            applied["open_files"] = soft
        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
            applied["address_space"] = address_space
    except (ValueError, OSError) as exc:
        raise SandboxError(f"cannot set the executor's resource limits ({exc}); check "
                           "[executor] address_space_mb and open_files") from exc
    return applied


def isolate_network() -> str:
    """Move this process into a private network namespace. Call before starting threads.

    Returns ``"private"`` or ``"shared (<why>)"``; never raises.
    """
    try:
        if _libc().unshare(CLONE_NEWNET) == 0:
            return "private"
        err = ctypes.get_errno()
    except (OSError, AttributeError) as exc:
        return f"shared (unshare unavailable: {exc})"
    why = os.strerror(err) if err else "unknown error"
    if err == errno.EPERM:
        why += ": needs root or CAP_SYS_ADMIN"
    return f"shared (unshare(CLONE_NEWNET) failed: {why})"


class BoardLock:
    """An exclusive, non-blocking ``flock`` on ``path``, held until ``release`` (or exit)."""

    def __init__(self, path: str):
        self.path = path
        self._fd: Optional[int] = None

    def acquire(self) -> "BoardLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
        except OSError as exc:
            raise SandboxError(f"cannot open the board lock file {self.path}: {exc.strerror}; "
                               "set [executor] lock_file to a writable path") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise BoardBusy(f"the board is in use by process {holder} (lock {self.path}); "
                                "stop the other program (a notebook holding QickSoc?) first") \
                    from None
            raise SandboxError(f"cannot lock {self.path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "BoardLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
