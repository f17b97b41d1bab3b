"""What ``userclient submit`` checks before it queues a workload file.

The same checks the board makes before it runs anything, done on the user's side so a
mistake is refused in a second instead of after the wait in the queue:

1. the file is a readable workload (gzip of program dumps, each one well-formed): not a
   text file, an empty or truncated gzip, or an HDF5 results file;
2. its programs were compiled for the firmware the device uploaded (its soccfg): same
   tProc version and, when the workload records it, the same firmware fingerprint;
3. its programs fit that firmware (channels, envelope memory, decimated buffers) and the
   default limits (``qickwork.WorkloadLimits``; a board may be configured stricter).

Both checks are ``qickwork.validate``'s (``read_submitted``, ``check_for_device``): the web
portal's upload makes the same ones, with the same messages.

A device that has not uploaded its soccfg yet cannot be checked against: that is a
warning (``SubmitCheck.warnings``), not a refusal; its board checks the firmware itself
before it runs the workload. ``UserClient.create_work`` does none of this (it queues what
it is given, as the original does); the CLI calls ``check_before_submit`` unless
``--force``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cloudqueue.errors import BadRequest, ConfigError

@dataclass
class SubmitCheck:
    """What was checked: the programs read and, when the device had uploaded one, the
    firmware they were checked against (None: not checked, see ``warnings``)."""
    programs: int
    device_firmware: str | None
    warnings: list[str] = field(default_factory=list)


def missing_dependency(exc: ImportError) -> ConfigError:
    """Reading a workload file needs ``qickwork`` (numpy, h5py), which a base install
    (``UserClient`` alone) lacks: say what to install instead of a traceback."""
    return ConfigError(f"reading a workload file needs numpy and h5py ({exc}): pip install "
                       "'qick-queue[user]'", kind="missing_dependency")


def read_entries(path: str | os.PathLike) -> list[Any]:
    """The programs of a workload file, checked as the board checks them; ``BadRequest``
    (kind ``no_such_file``, ``invalid_workload``, ``too_large``) saying what the file is,
    ``ConfigError`` (kind ``missing_dependency``) without numpy and h5py."""
    try:
        from qickwork import WorkloadError
        from qickwork.validate import read_submitted
    except ImportError as exc:
        raise missing_dependency(exc) from None

    if not os.path.isfile(path):
        raise BadRequest(f"{path}: no such workload file", kind="no_such_file")
    try:
        return read_submitted(path, str(path))
    except WorkloadError as exc:
        raise BadRequest(exc.message, kind=exc.kind) from None


def check_before_submit(client: Any, path: str | os.PathLike, device_id: str) -> SubmitCheck:
    """Check a workload file against the device it is for (see the module docstring).

    ``client`` is a ``UserClient``. Raises ``BadRequest`` (kinds ``invalid_workload``,
    ``firmware_mismatch``, ``too_large``) when the board would refuse the workload, and
    what ``UserClient.get_device`` raises (``NotFound`` for an unknown device)."""
    entries = read_entries(path)
    from qickwork import WorkloadError
    from qickwork.firmware import describe
    from qickwork.validate import check_for_device

    device = client.get_device(device_id)
    if not device.DeviceConfigurationUrl:
        return SubmitCheck(len(entries), None, [
            f"device {device_id} has not uploaded its configuration (soccfg) yet, so the "
            "workload was not checked against its firmware; its board checks it before "
            "running it"])
    soccfg = client.get_soccfg(device_id)
    try:
        check_for_device(entries, soccfg, str(path), device_id)
    except WorkloadError as exc:
        raise BadRequest(exc.message, kind=exc.kind) from None
    return SubmitCheck(len(entries), describe(soccfg))
