"""The health snapshot, the supervisor's third job: one plain dict per loop pass that the
health endpoint serves (``/status``, ``/metrics``), the heartbeat carries to the service
(``health_summary``, kept small) and systemd shows (``status_line``)."""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Tuple

from supervisor.children import Child
from boardcore.errors import DiskFull
from supervisor.policy import ChildStatus
from boardcore.spool import Spool

# a reason longer than this is cut in the heartbeat (the service keeps the summary per device)
MAX_REASON_CHARS = 300


def board_state(children: Mapping[str, Child], spool: Spool, busy: bool) -> Tuple[str, str]:
    """ERROR (with the reason) while a child is flapping or the disk is full, else BUSY or
    ONLINE."""
    errors = [f"{c.name}: {c.tracker.reason}" for c in children.values() if c.tracker.in_error]
    if errors:
        return "ERROR", "; ".join(errors)
    try:
        spool.check_room()
    except DiskFull as exc:
        return "ERROR", f"disk full: {exc}"
    return ("BUSY" if busy else "ONLINE"), ""


def children_view(children: Mapping[str, Child], now: float) -> Dict[str, Dict[str, Any]]:
    view = {}
    for name, c in children.items():
        view[name] = {"pid": c.pid if c.alive() else None, "state": c.status.value,
                      "restarts": c.tracker.restarts, "last_exit": c.tracker.reason,
                      "heartbeat_age": round(c.beat.age(now), 2) if c.beat and
                      c.status == ChildStatus.RUNNING else None}
    return view


def firmware_of(executor: Optional[Child]) -> Optional[Dict[str, Any]]:
    """What the executor said about the board in its hello (None until it is up)."""
    if executor is None or not executor.hello:
        return None
    return {k: executor.hello.get(k) for k in ("board", "board_kind", "fingerprint", "network")}


def build_snapshot(*, now: float, state: str, reason: str, children: Mapping[str, Child],
                   current: Optional[Dict[str, Any]], spool: Spool, queue: Dict[str, Any],
                   counts: Dict[str, int], busy_seconds: float, draining: bool,
                   simulated: bool = False) -> Dict[str, Any]:
    return {
        "loop_at": now, "state": state, "reason": reason, "simulated": simulated,
        "children": children_view(children, now), "current": current,
        "spool": spool.depths(), "queue": dict(queue), "firmware": firmware_of(
            children.get("executor")), "counts": dict(counts),
        "busy_seconds": busy_seconds, "draining": draining, "pid": os.getpid()}


def initial_snapshot(queue: Dict[str, Any], counts: Dict[str, int], now: float,
                     simulated: bool = False) -> Dict[str, Any]:
    return {"loop_at": now, "state": "STARTING", "reason": "", "simulated": simulated,
            "children": {},
            "current": None, "spool": {}, "queue": dict(queue), "firmware": None,
            "counts": dict(counts), "busy_seconds": 0.0, "draining": False, "pid": os.getpid()}


def _cut(text: str, limit: int = MAX_REASON_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def health_summary(snap: Dict[str, Any]) -> Dict[str, Any]:
    """What the heartbeat sends (``Health`` on ``PUT /devices/{id}``): small and bounded."""
    return {"State": snap["state"], "Reason": _cut(snap["reason"]),
            "Processes": {n: {"State": c["state"], "Restarts": c["restarts"]}
                          for n, c in snap["children"].items()},
            "Spool": snap["spool"], "CurrentWork": snap["current"],
            "Firmware": snap["firmware"], "Simulated": bool(snap.get("simulated"))}


def status_line(snap: Dict[str, Any], draining: bool) -> str:
    """systemd's STATUS=: state, reason, current work, counts, in one line."""
    parts = [snap.get("state", "STARTING")]
    if snap.get("simulated"):
        parts.append("SIMULATED board")
    if snap.get("reason"):
        parts.append(snap["reason"])
    cur = snap.get("current")
    if cur:
        parts.append(f"running {cur['work_id']} ({cur['programs_done']}/"
                     f"{cur['programs_total']})")
    spool = snap.get("spool", {})
    parts.append(f"ready {spool.get('ready', 0)}, to upload {spool.get('outgoing', 0)}")
    c = snap.get("counts", {})
    parts.append(f"done {c.get('DONE', 0)}, failed {c.get('FAILED', 0)}")
    if draining:
        parts.insert(0, "stopping")
    return "; ".join(parts)
