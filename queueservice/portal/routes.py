"""The portal's pages (slice 1 of docs/portal.md): log in, the first login's new password,
log out, the home page and "my API keys".

Every page is rendered from a Jinja2 template with autoescaping on, so whatever a user
typed (a name, a key's label) is shown as text. Every POST checks the ``Origin`` and the
CSRF token (``csrf``) before it changes anything, and answers a 303 redirect, except
creating an API key, whose answer is the one page that shows the key (``no-store``).
The pages call the stores in process (``IdentityStore``, ``AdminStore``), never the API,
and keep the API's rules (a disabled user refused; a key revoked by its owner or an admin).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cloudqueue.errors import AuthError, QueueError
from queueservice.admin import AdminStore, check_name
from queueservice.errors import CognitoError
from queueservice.httpedge import call, now_ms, service
from queueservice.identities import user_principal_of
from queueservice.logins import ATTEMPTS_EXCEEDED, ATTEMPTS_EXCEEDED_HELP
from queueservice.portal import account, admin_pages, devices, submit, teams, workloads
from queueservice.portal.csrf import LOGIN_FORM_SECONDS, login_cookie
from queueservice.portal.sessions import PortalSession, PortalSessionStore
from queueservice.portal.web import (CHALLENGE_COOKIE, HERE, LOGIN_COOKIE, SESSION_COOKIE,
                                     drop_cookie, login_form, page, posted, redirect, refused,
                                     session_of, set_cookie, start_session)
from queueservice.routes_auth import challenge_session, challenge_user, password_policy_error

CHALLENGE_SECONDS = 300


def _pre_login_page(request: Request, name: str, context: dict[str, Any],
                    status: int = 200) -> Response:
    """A page with a form posted before login: a fresh CSRF token, in the form and in the
    signed cookie."""
    token, cookie = login_cookie(service(request).signer)
    response = page(request, name, {**context, "csrf": token}, status=status)
    set_cookie(response, request, LOGIN_COOKIE, cookie, LOGIN_FORM_SECONDS)
    return response


# -- log in, the first login's new password, log out -------------------------------------
async def login_page(request: Request) -> Response:
    """``GET /login``."""
    if await session_of(request) is not None:
        return redirect("/")
    return _pre_login_page(request, "login.html", {"email": ""})


async def login(request: Request) -> Response:
    """``POST /login`` (email, password, csrf): checked as ``/oauth2/token``'s Cognito
    login checks it; a temporary password leads to ``/new-password``."""
    form = await login_form(request)
    if form is None:
        return refused(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    svc = service(request)
    try:
        user = await call(svc.identities.login, email, password)
    except AuthError as exc:  # a wrong password, too many, or (after a right one) disabled
        why = ATTEMPTS_EXCEEDED_HELP if exc.message == ATTEMPTS_EXCEEDED else exc.message
        return _pre_login_page(request, "login.html", {"email": email, "error": why},
                               status=400)
    if not user["password_temporary"]:
        return await start_session(request, user["user_id"])
    response = redirect("/new-password")
    set_cookie(response, request, CHALLENGE_COOKIE, challenge_session(svc, user),
                CHALLENGE_SECONDS)
    return response


def _challenged(request: Request, email: str | None) -> dict:
    """The user the new-password cookie was issued to, still temporary (CognitoError)."""
    svc = service(request)
    cookie = request.cookies.get(CHALLENGE_COOKIE)
    if email is None:  # the page itself: whose it is comes from the cookie
        try:
            user = svc.identities.user(svc.signer.verify(cookie or "")["sub"]) or {}
        except AuthError:
            user = {}
        email = user.get("email", "")
    return challenge_user(svc, cookie, email)


async def new_password_page(request: Request) -> Response:
    """``GET /new-password``: the first login's page, after a temporary password."""
    try:
        user = await call(_challenged, request, None)
    except CognitoError:
        return redirect("/login")
    return _pre_login_page(request, "new_password.html", {"email": user["email"]})


async def new_password(request: Request) -> Response:
    """``POST /new-password`` (email, password, confirm, csrf): the temporary password is
    replaced (and stops working); a session begins."""
    form = await login_form(request)
    if form is None:
        return refused(request)
    email = form.get("email", "")
    try:
        user = await call(_challenged, request, email)
    except CognitoError as exc:
        return _pre_login_page(request, "login.html", {
            "email": email, "error": f"{exc.message} Log in again with your temporary "
                                     "password."}, status=400)
    password, confirm = form.get("password", ""), form.get("confirm", "")
    problem = password_policy_error(password)
    if problem is None and password != confirm:
        problem = "The two passwords differ: type the same new password twice."
    if problem is not None:
        return _pre_login_page(request, "new_password.html",
                               {"email": user["email"], "error": problem}, status=400)
    changed = await call(service(request).identities.change_password, user["user_id"],
                         password, user["password_hash"])
    if not changed:  # another answer won the race
        return redirect("/login")
    return await start_session(request, user["user_id"])


async def logout(request: Request) -> Response:
    """``POST /logout`` (csrf): the session is revoked; back to the login page."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    session, _ = answer
    await call(PortalSessionStore(service(request).identities.db).revoke,
               session.token_hash, now_ms())
    response = redirect("/login")
    drop_cookie(response, request, SESSION_COOKIE)
    return response


# -- pages -------------------------------------------------------------------------------
async def home(request: Request) -> Response:
    """``GET /``: who you are, and where to go."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    svc = service(request)
    return page(request, "home.html", {
        "groups": user_principal_of(session.user).groups,
        "endpoint": svc.root_url(request) + svc.prefix}, session=session)


def _keys(request: Request, session: PortalSession) -> list[dict]:
    return AdminStore(service(request).identities.db).api_keys(session.user["user_id"])


async def _keys_page(request: Request, session: PortalSession, *, status: int = 200,
                     **context: Any) -> Response:
    rows = await call(_keys, request, session)
    return page(request, "keys.html", {"keys": rows, **context}, status=status,
                 session=session)


async def keys_page(request: Request) -> Response:
    """``GET /keys``: my API keys that still work."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    return await _keys_page(request, session)


async def create_key(request: Request) -> Response:
    """``POST /keys`` (label, csrf): a new API key, shown on this answer only."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    session, form = answer
    label = form.get("label", "").strip()
    try:
        label = check_name(label, "Label") if label else None
        row, api_key = await call(AdminStore(service(request).identities.db).create_api_key,
                                  session.user["user_id"], label, now_ms())
    except QueueError as exc:
        return await _keys_page(request, session, status=exc.status or 400,
                                error=exc.message)
    return await _keys_page(request, session, created=row, api_key=api_key)


async def revoke_key(request: Request) -> Response:
    """``POST /keys/{key_id}/revoke`` (csrf): the key stops working."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    session, _ = answer
    try:
        await call(AdminStore(service(request).identities.db).revoke_api_key,
                   request.path_params["key_id"], now_ms(),
                   caller=user_principal_of(session.user))
    except QueueError as exc:  # not yours (404), or your last way in (409)
        return await _keys_page(request, session, status=exc.status or 400,
                                error=exc.message)
    return redirect("/keys")


def portal_routes() -> list[BaseRoute]:
    """The portal's pages and its static files; ``app`` adds them after the API's routes,
    so an API path always wins (none of these is one)."""
    return [
        Route("/", home, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/new-password", new_password_page, methods=["GET"]),
        Route("/new-password", new_password, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/keys", keys_page, methods=["GET"]),
        Route("/keys", create_key, methods=["POST"]),
        Route("/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
        *account.routes(),
        *admin_pages.routes(),
        *devices.routes(),
        *teams.routes(),
        *workloads.routes(),
        *submit.routes(),
        Mount("/portal/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
