"""My account: change my password, log out everywhere (``/account``).

A changed password ends every session and refresh token of the user
(``IdentityStore.change_password``, as the Cognito-compatible change does), this browser's
session too; this browser then gets a new one, so the person who changed it stays logged in
here and nowhere else. The current password is asked first: a session left open on a shared
machine must not be enough to take the account over.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cloudqueue.errors import AuthError
from queueservice.httpedge import call, now_ms, service
from queueservice.logins import ATTEMPTS_EXCEEDED, ATTEMPTS_EXCEEDED_HELP
from queueservice.portal.sessions import PortalSession, PortalSessionStore
from queueservice.portal.web import (SESSION_COOKIE, drop_cookie, page, posted, redirect,
                                     session_of, start_session)
from queueservice.routes_auth import password_policy_error

WRONG_CURRENT = "Your current password is not that one: type it again (nothing was changed)."


def _account_page(request: Request, session: PortalSession, *, status: int = 200,
                  **context: Any) -> Response:
    return page(request, "account.html", {"changed": request.query_params.get("changed"),
                                          **context}, status=status, session=session)


async def account_page(request: Request) -> Response:
    """``GET /account``: who I am, the password form, "log out everywhere"."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    return _account_page(request, session)


def _change(request: Request, user_id: str, current: str, new: str) -> str | None:
    """Change the password (None), or why not. Reads the stored hash afresh, so a change
    made meanwhile elsewhere wins and this one is refused (compare-and-set)."""
    identities = service(request).identities
    user = identities.user(user_id) or {}
    try:
        user = identities.password_user(user.get("email", ""), current)
    except AuthError as exc:  # a wrong one, or too many wrong ones in a row
        return WRONG_CURRENT if exc.message != ATTEMPTS_EXCEEDED else ATTEMPTS_EXCEEDED_HELP
    if user["user_id"] != user_id or \
            not identities.change_password(user_id, new, user["password_hash"]):
        return "Your password was changed meanwhile: log in again with the new one."
    return None


async def change_password(request: Request) -> Response:
    """``POST /account/password`` (current, password, confirm, csrf)."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    session, form = answer
    new, confirm = form.get("password", ""), form.get("confirm", "")
    problem = password_policy_error(new)
    if problem is None and new != confirm:
        problem = "The two new passwords differ: type the same new password twice."
    if problem is None:
        problem = await call(_change, request, session.user["user_id"],
                             form.get("current", ""), new)
    if problem is not None:
        return _account_page(request, session, status=400, error=problem)
    return await start_session(request, session.user["user_id"], "/account?changed=1")


async def logout_everywhere(request: Request) -> Response:
    """``POST /account/logout-everywhere`` (csrf): every portal session of mine ends, this
    one too (API keys and tokens stay: they are revoked on the keys page)."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    session, _ = answer
    await call(PortalSessionStore(service(request).identities.db).revoke_user,
               session.user["user_id"], now_ms())
    response = redirect("/login")
    drop_cookie(response, request, SESSION_COOKIE)
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/account", account_page, methods=["GET"]),
        Route("/account/password", change_password, methods=["POST"]),
        Route("/account/logout-everywhere", logout_everywhere, methods=["POST"]),
    ]
