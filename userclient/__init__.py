"""The user's side of the queue: ``UserClient`` (library) and the ``userclient`` CLI.

``WorkloadManager`` (building workloads from QICK programs, reading results) lives in
``userclient.workload``.
"""
from userclient.client import UserClient, WaitTimeout

__all__ = ["UserClient", "WaitTimeout"]
