"""Why ``QickSoc()`` did not open, in words an admin can act on.

PYNQ's failures on a board run by ``qick.service`` come from the service's environment and
sandbox more often than from the board (see ``qick.service`` and ``qick-supervisor
install-service``):

- ``XILINX_XRT`` missing: PYNQ registers no embedded device, ``Device.active_device``
  raises ``RuntimeError: No Devices Found``. PYNQ images set it in ``/etc/environment`` and
  ``/etc/profile.d``; the unit must read those (``EnvironmentFile``).
- a read-only file system or a permission error on ``/lib/firmware`` (the bitstream),
  ``/sys/class/fpga_manager`` (loading it) or PYNQ's package folder (its global state file):
  the sandbox's ``ReadWritePaths``.
- a permission error on ``/dev/dri/renderD*`` (XRT's zocl), ``/dev/uio*``, ``/dev/mem``:
  the sandbox's ``DeviceAllow``.
- ``pynq`` (or ``qick``) not importable: the unit runs an interpreter that is not PYNQ's
  venv.
"""
from __future__ import annotations

import errno
import re
from typing import Mapping, Optional

AS_SERVICE = "then run `qick-supervisor check --as-service`"
INSTALL = "`qick-supervisor install-service`"
WRITABLE = ("/lib/firmware", "/sys/class/fpga_manager")
DEVICE_ALLOW = (("/dev/dri/", "char-drm rw"), ("/dev/uio", "char-uio rw"),
                ("/dev/mem", "/dev/mem rw"), ("/dev/xdevcfg", "/dev/xdevcfg rw"))
_QUOTED_PATH = re.compile(r"['\"](/[^'\"]+)['\"]")
_DENIED = ("Read-only file system", "Permission denied", "Operation not permitted")


def pynq_said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _path_of(exc: BaseException) -> Optional[str]:
    """The path an error is about: ``OSError.filename``, else the first quoted absolute
    path in its text (PYNQ and XRT re-raise some OSErrors as RuntimeError)."""
    filename = getattr(exc, "filename", None)
    if isinstance(filename, str) and filename.startswith("/"):
        return filename
    found = _QUOTED_PATH.search(str(exc))
    return found.group(1) if found else None


def _writable_folder(path: str) -> Optional[str]:
    """The folder of PYNQ's that ``path`` is in (what ReadWritePaths must name), or None."""
    for folder in WRITABLE:
        if path == folder or path.startswith(folder + "/"):
            return folder
    parts = path.split("/")
    if "pynq" in parts:  # PYNQ's package folder: its global state file lives there
        return "/".join(parts[:parts.index("pynq") + 1])
    return None


def _denied(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return True
    return any(words in str(exc) for words in _DENIED)


def explain_open_failure(exc: BaseException, environ: Mapping[str, str]) -> str:
    """What PYNQ said (the exception's type and text), then which part of the installation
    to look at. ``environ`` is the environment the board was opened in. Short: it ends up
    in the heartbeat's ERROR reason, which is cut at 300 characters."""
    said = pynq_said(exc)
    if isinstance(exc, ImportError):
        if "QickSoc" in str(exc):  # qick imported, but it is not on a Zynq
            return (f"{said}: qick has QickSoc only on the RFSoC's ARM CPU; on a machine "
                    "without the RFSoC, set `[executor] board = simulated`")
        package = (getattr(exc, "name", None) or "").split(".")[0]
        if isinstance(exc, ModuleNotFoundError) and package in ("pynq", "qick"):
            return (f"{said}: not PYNQ's venv; install qick-queue into it "
                    f"(/usr/local/share/pynq-venv) and rewrite the unit with {INSTALL}")
        return f"{said}: a package the board needs does not import; {AS_SERVICE}"
    path = _path_of(exc)
    if path and _denied(exc):
        for prefix, allow in DEVICE_ALLOW:
            if path.startswith(prefix):
                return (f"{said}: the sandbox denies {path}; add DeviceAllow={allow} to the "
                        f"unit, {AS_SERVICE}")
        folder = _writable_folder(path)
        if folder:
            return (f"{said}: read-only in the sandbox; add {folder} to the unit's "
                    f"ReadWritePaths, {AS_SERVICE}")
        return f"{said}: {path} is out of the service's reach; {AS_SERVICE}"
    if "XILINX_XRT" not in environ:
        return (f"{said}: XILINX_XRT is not set, so PYNQ finds no device: the unit must load "
                f"PYNQ's environment; rewrite it with {INSTALL}")
    return f"{said}; {AS_SERVICE}"
