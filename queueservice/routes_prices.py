"""A device's prices (feature ``prices``; issue 12, docs/facility.md): admins set them
(``PUT``, which turns the facility's accounting on), anyone who may use the device reads
them (``GET``). The rules are ``pricing.PriceStore``'s; under ``--stock-protocol`` these
routes are not mounted (``app.api_routes``)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from queueservice import policy
from queueservice.httpedge import call, field, json_ok, now_ms, read_json, service, user
from queueservice.pricing import MAX_PRICE, PriceStore, Row


def _store(request: Request) -> PriceStore:
    return PriceStore(service(request).identities.db)


def prices_view(row: Row) -> dict[str, Any]:
    return {
        "DeviceId": row["device_id"],
        "PerUsedSecond": row["per_used_second"],
        "PerReservedSecond": row["per_reserved_second"],
        "Accounting": row["accounting"],
        "History": [{"PerUsedSecond": h["per_used_second"],
                     "PerReservedSecond": h["per_reserved_second"],
                     "Since": policy.iso(h["since"]), "SetBy": h["set_by"]}
                    for h in row["history"]],
    }


async def set_prices(request: Request) -> Response:
    """``PUT /devices/{id}/prices {PerUsedSecond, PerReservedSecond}`` (admin): new prices
    in force from now, and accounting on. Answers the prices as ``GET`` does."""
    who = await user(request)
    body = await read_json(request)
    used = field(body, "PerUsedSecond", (int, float), required=True, bounds=(0, MAX_PRICE))
    reserved = field(body, "PerReservedSecond", (int, float), required=True,
                     bounds=(0, MAX_PRICE))
    row = await call(_store(request).set_prices, request.path_params["device_id"],
                     float(used), float(reserved), now_ms(), caller=who)
    return json_ok(prices_view(row))


async def get_prices(request: Request) -> Response:
    """``GET /devices/{id}/prices`` (any user): the prices in force now (credits, in
    device-seconds, per second), every change newest first, and whether accounting is on."""
    await user(request)
    row = await call(_store(request).prices, request.path_params["device_id"], now_ms())
    return json_ok(prices_view(row))
