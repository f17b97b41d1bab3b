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

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from cloudqueue.errors import AuthError, QueueError
from queueservice import policy
from queueservice.admin import AdminStore, check_name
from queueservice.errors import CognitoError
from queueservice.httpedge import call, now_ms, read_body, service
from queueservice.identities import user_principal_of
from queueservice.portal.csrf import (LOGIN_FORM_SECONDS, login_cookie, login_token_of,
                                      origin_ok, tokens_match)
from queueservice.portal.sessions import ABSOLUTE_MS, PortalSession, PortalSessionStore
from queueservice.routes_auth import challenge_session, challenge_user, password_policy_error

HERE = Path(__file__).parent
SESSION_COOKIE = "qq_portal"
LOGIN_COOKIE = "qq_login"
CHALLENGE_COOKIE = "qq_new_password"
CHALLENGE_SECONDS = 300
#: the largest form this slice accepts (e-mail, passwords, a label, the CSRF token)
FORM_LIMIT = 16 * 1024
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                                      "form-action 'self'; base-uri 'none'"}
CSRF_REFUSED = ("This form has expired or did not come from this site: reload the page "
                "and try again.")

templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"),
                                            autoescape=True))
templates.env.filters["when"] = lambda ms: policy.iso(ms) or "never"


# -- the edge: cookies, forms, pages -----------------------------------------------------
def _https(request: Request) -> bool:
    """Reached over HTTPS: the public URL says so, or the proxy in front does."""
    public = service(request).public_url or ""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return public.lower().startswith("https://") or forwarded == "https" \
        or request.url.scheme == "https"


def _own_origin(request: Request) -> str:
    svc = service(request)
    if svc.public_url:
        return svc.public_url
    scheme = "https" if _https(request) else request.url.scheme
    return f"{scheme}://{request.headers.get('host', request.url.netloc)}"


def _set_cookie(response: Response, request: Request, name: str, value: str,
                max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=_https(request),
                        httponly=True, samesite="strict")


def _drop_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/", secure=_https(request), httponly=True,
                           samesite="strict")


def _redirect(to: str) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def _page(request: Request, name: str, context: dict[str, Any], *, status: int = 200,
          session: PortalSession | None = None) -> Response:
    context = {"me": session.user if session else None,
               "csrf": session.csrf_token if session else "", **context}
    return templates.TemplateResponse(request, name, context, status_code=status,
                                      headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    raw = await read_body(request, FORM_LIMIT)
    fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


async def _session(request: Request) -> PortalSession | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await call(PortalSessionStore(service(request).identities.db).lookup, token,
                      now_ms())


def _refused(request: Request, session: PortalSession | None = None) -> Response:
    return _page(request, "refused.html", {"message": CSRF_REFUSED}, status=403,
                 session=session)


async def _posted(request: Request) -> tuple[PortalSession, dict[str, str]] | Response:
    """A logged-in user's form, its Origin and CSRF token checked (else the answer)."""
    session = await _session(request)
    if session is None:
        return _redirect("/login")
    form = await _form(request)
    if not origin_ok(request.headers.get("origin"), _own_origin(request)) or \
            not tokens_match(session.csrf_token, form.get("csrf")):
        return _refused(request, session)
    return session, form


async def _login_form(request: Request) -> dict[str, str] | None:
    """A form posted before login (log in, new password), its Origin and pre-session CSRF
    token checked (None: refused)."""
    form = await _form(request)
    expected = login_token_of(service(request).signer, request.cookies.get(LOGIN_COOKIE))
    if not origin_ok(request.headers.get("origin"), _own_origin(request)) or \
            not tokens_match(expected, form.get("csrf")):
        return None
    return form


def _pre_login_page(request: Request, name: str, context: dict[str, Any],
                    status: int = 200) -> Response:
    """A page with a form posted before login: a fresh CSRF token, in the form and in the
    signed cookie."""
    token, cookie = login_cookie(service(request).signer)
    response = _page(request, name, {**context, "csrf": token}, status=status)
    _set_cookie(response, request, LOGIN_COOKIE, cookie, LOGIN_FORM_SECONDS)
    return response


async def _logged_in(request: Request, user_id: str) -> Response:
    """A new session for this user, its cookie set, on to the home page."""
    token, _ = await call(PortalSessionStore(service(request).identities.db).create,
                          user_id, now_ms())
    response = _redirect("/")
    _set_cookie(response, request, SESSION_COOKIE, token, ABSOLUTE_MS // 1000)
    _drop_cookie(response, request, LOGIN_COOKIE)
    _drop_cookie(response, request, CHALLENGE_COOKIE)
    return response


# -- log in, the first login's new password, log out -------------------------------------
async def login_page(request: Request) -> Response:
    """``GET /login``."""
    if await _session(request) is not None:
        return _redirect("/")
    return _pre_login_page(request, "login.html", {"email": ""})


async def login(request: Request) -> Response:
    """``POST /login`` (email, password, csrf): checked as ``/oauth2/token``'s Cognito
    login checks it; a temporary password leads to ``/new-password``."""
    form = await _login_form(request)
    if form is None:
        return _refused(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    svc = service(request)
    try:
        user = await call(svc.identities.login, email, password)
    except AuthError as exc:  # a wrong password, or (after a right one) a disabled user
        return _pre_login_page(request, "login.html", {"email": email, "error": exc.message},
                               status=400)
    if not user["password_temporary"]:
        return await _logged_in(request, user["user_id"])
    response = _redirect("/new-password")
    _set_cookie(response, request, CHALLENGE_COOKIE, challenge_session(svc, user),
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
        return _redirect("/login")
    return _pre_login_page(request, "new_password.html", {"email": user["email"]})


async def new_password(request: Request) -> Response:
    """``POST /new-password`` (email, password, confirm, csrf): the temporary password is
    replaced (and stops working); a session begins."""
    form = await _login_form(request)
    if form is None:
        return _refused(request)
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
        return _redirect("/login")
    return await _logged_in(request, user["user_id"])


async def logout(request: Request) -> Response:
    """``POST /logout`` (csrf): the session is revoked; back to the login page."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    session, _ = posted
    await call(PortalSessionStore(service(request).identities.db).revoke,
               session.token_hash, now_ms())
    response = _redirect("/login")
    _drop_cookie(response, request, SESSION_COOKIE)
    return response


# -- pages -------------------------------------------------------------------------------
async def home(request: Request) -> Response:
    """``GET /``: who you are, and where to go."""
    session = await _session(request)
    if session is None:
        return _redirect("/login")
    svc = service(request)
    return _page(request, "home.html", {
        "groups": user_principal_of(session.user).groups,
        "endpoint": svc.root_url(request) + svc.prefix}, session=session)


def _keys(request: Request, session: PortalSession) -> list[dict]:
    return AdminStore(service(request).identities.db).api_keys(session.user["user_id"])


async def _keys_page(request: Request, session: PortalSession, *, status: int = 200,
                     **context: Any) -> Response:
    rows = await call(_keys, request, session)
    return _page(request, "keys.html", {"keys": rows, **context}, status=status,
                 session=session)


async def keys_page(request: Request) -> Response:
    """``GET /keys``: my API keys that still work."""
    session = await _session(request)
    if session is None:
        return _redirect("/login")
    return await _keys_page(request, session)


async def create_key(request: Request) -> Response:
    """``POST /keys`` (label, csrf): a new API key, shown on this answer only."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
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
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    session, _ = posted
    try:
        await call(AdminStore(service(request).identities.db).revoke_api_key,
                   request.path_params["key_id"], now_ms(),
                   caller=user_principal_of(session.user))
    except QueueError as exc:  # not yours (404), or your last way in (409)
        return await _keys_page(request, session, status=exc.status or 400,
                                error=exc.message)
    return _redirect("/keys")


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
        Mount("/portal/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
