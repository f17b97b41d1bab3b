"""Mock devices: what ``POST /devices {Mock: ...}`` accepts and how they show on the wire.

A mock device is a simulated QICK board the service runs itself (``mockfleet``), either a
named board (``{"Board": "zcu216-v2"}``) or a mirror of a real device's firmware
(``{"MirrorOf": "<DeviceId>"}``: it runs on the soccfg that device uploaded). This module is
pure data: the web process never imports qick.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from cloudqueue.errors import BadRequest

#: the simulated boards a mock can be (``executor.boards.BOARDS``; a test keeps them equal)
MOCK_BOARDS = ("zcu216-v1", "zcu216-v2")
DEFAULT_BOARD = "zcu216-v2"


def parse(value: Mapping[str, Any] | None) -> dict | None:
    """The stored form of a request's ``Mock`` object (None: a real device)."""
    if value is None:
        return None
    unknown = sorted(set(value) - {"Board", "MirrorOf"})
    if unknown:
        raise BadRequest(f"Mock has unknown field(s) {unknown}: give Board or MirrorOf")
    board, mirror = value.get("Board"), value.get("MirrorOf")
    if board is not None and mirror is not None:
        raise BadRequest("Mock takes Board or MirrorOf, not both")
    if mirror is not None:
        if not isinstance(mirror, str) or not mirror or len(mirror) > 100:
            raise BadRequest("Mock.MirrorOf must be the DeviceId of a real device")
        return {"MirrorOf": mirror}
    board = DEFAULT_BOARD if board is None else board
    if board not in MOCK_BOARDS:
        raise BadRequest(f"Mock.Board must be one of {', '.join(MOCK_BOARDS)}, "
                         f"not {json.dumps(board)[:60]}")
    return {"Board": board}


def spec(row: Mapping[str, Any]) -> dict | None:
    raw = row.get("mock")
    return json.loads(raw) if raw else None


def mirror_of(row: Mapping[str, Any]) -> str | None:
    s = spec(row)
    return s.get("MirrorOf") if s else None


def device_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """Extra fields of ``GET /devices`` items: none for a real device (stock shape)."""
    s = spec(row)
    if s is None:
        return {}
    out: dict[str, Any] = {"Mock": True}
    if "MirrorOf" in s:
        out["MirrorOf"] = s["MirrorOf"]
    else:
        out["MockBoard"] = s["Board"]
    return out
