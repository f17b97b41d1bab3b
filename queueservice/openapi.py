"""``GET /openapi.json``: an OpenAPI 3.1 description of this service, made from its own
routes (paths, methods, path parameters, each handler's first docstring line), so that it
cannot drift from what is served. Request and answer bodies are described in
docs/protocol.md; here every error is the one ``{ErrorMessage, ErrorKind}`` shape."""
from __future__ import annotations

import re
from typing import Any, Iterable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from queueservice.httpedge import service

ERROR = {"type": "object", "required": ["ErrorMessage", "ErrorKind"],
         "properties": {"ErrorMessage": {"type": "string"}, "ErrorKind": {"type": "string"}}}
#: paths that take no bearer credentials (their own, or none)
OPEN = ("/healthz", "/metrics", "/oauth2/token", "/", "/files/{key}", "/openapi.json")

#: the web portal's package: its pages are HTML for people, not the API described here
PORTAL = "queueservice.portal."


def _routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(route.routes, prefix + route.path)
        elif isinstance(route, Route) and not route.endpoint.__module__.startswith(PORTAL):
            yield prefix + re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), route


def _operation(path: str, route: Route) -> dict[str, Any]:
    doc = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
    op: dict[str, Any] = {
        "summary": doc, "operationId": route.name,
        "responses": {"default": {"description": "an error", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
    params = re.findall(r"\{(\w+)\}", path)
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True,
                             "schema": {"type": "string"}} for p in params]
    if path not in OPEN:
        op["security"] = [{"bearer": []}]
    return op


async def describe(request: Request) -> Response:
    """The OpenAPI description of this service (absent under ``--stock-protocol``)."""
    if service(request).limits.stock_protocol:
        raise HTTPException(404)
    paths: dict[str, dict[str, Any]] = {}
    for path, route in _routes(request.app.routes):
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(path, route)
    return JSONResponse({
        "openapi": "3.1.0",
        "info": {"title": "qick-queue", "version": request.app.state.version,
                 "description": "The QICK board queue; the wire protocol is docs/protocol.md"},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR}, "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "an API key (qk_...) or a JWT from /oauth2/token or POST /"}}},
    })
