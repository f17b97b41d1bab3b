"""The user's side of the queue: ``UserClient`` (library), ``WorkloadManager`` (building
workloads from QICK programs, reading results) and the ``userclient`` CLI.

A SideQICK user changes one line: ``from user_client import UserClient, WorkloadManager``
becomes ``from userclient import UserClient, WorkloadManager``. ``WorkloadManager`` is
imported on first use, so ``UserClient`` alone needs neither qick, numpy nor h5py.
"""
from typing import Any

from userclient.client import UserClient
from userclient.errors import WaitTimeout, WorkNotDone

__all__ = ["UserClient", "WaitTimeout", "WorkNotDone", "WorkloadManager"]


def __getattr__(name: str) -> Any:
    if name == "WorkloadManager":
        from userclient.workload import WorkloadManager
        return WorkloadManager
    raise AttributeError(f"module 'userclient' has no attribute {name!r}")
