"""The portal's edge, shared by every page module: the templates, the headers every page
answers, the cookies and their flags, bounded form reading, the session of a request, and
the checks a posted form passes (Origin and CSRF) before anything changes.

A page module calls ``session_of`` (a GET) or ``posted`` (a POST) first, then answers with
``page`` or ``redirect``; ``refused`` is the 403 page of a failed check.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from queueservice import policy
from queueservice.httpedge import call, now_ms, read_body, service
from queueservice.identities import user_principal_of
from queueservice.portal.csrf import login_token_of, origin_ok, tokens_match
from queueservice.portal.sessions import ABSOLUTE_MS, PortalSession, PortalSessionStore

HERE = Path(__file__).parent
SESSION_COOKIE = "qq_portal"
LOGIN_COOKIE = "qq_login"
CHALLENGE_COOKIE = "qq_new_password"
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
def is_https(request: Request) -> bool:
    """Reached over HTTPS: the public URL says so, or the proxy in front does."""
    public = service(request).public_url or ""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return public.lower().startswith("https://") or forwarded == "https" \
        or request.url.scheme == "https"


def own_origin(request: Request) -> str:
    svc = service(request)
    if svc.public_url:
        return svc.public_url
    scheme = "https" if is_https(request) else request.url.scheme
    return f"{scheme}://{request.headers.get('host', request.url.netloc)}"


def set_cookie(response: Response, request: Request, name: str, value: str,
                max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=is_https(request),
                        httponly=True, samesite="strict")


def drop_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/", secure=is_https(request), httponly=True,
                           samesite="strict")


def redirect(to: str) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def page(request: Request, name: str, context: dict[str, Any], *, status: int = 200,
          session: PortalSession | None = None) -> Response:
    context = {"me": session.user if session else None,
               "admin": session is not None and user_principal_of(session.user).is_admin,
               "csrf": session.csrf_token if session else "", **context}
    return templates.TemplateResponse(request, name, context, status_code=status,
                                      headers=HEADERS)


def not_found(request: Request, session: PortalSession, title: str, message: str,
              back: tuple[str, str], *, status: int = 404) -> Response:
    """The page of what is not there, or not this user's to see (the two look alike:
    a stranger's object never shows that it exists); ``back``: (link, its words)."""
    return page(request, "not_found.html", {"title": title, "message": message,
                                            "back_href": back[0], "back_label": back[1]},
                status=status, session=session)


async def read_form(request: Request) -> dict[str, str]:
    raw = await read_body(request, FORM_LIMIT)
    fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


async def session_of(request: Request) -> PortalSession | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await call(PortalSessionStore(service(request).identities.db).lookup, token,
                      now_ms())


def refused(request: Request, session: PortalSession | None = None) -> Response:
    return page(request, "refused.html", {"message": CSRF_REFUSED}, status=403,
                 session=session)


async def posted(request: Request) -> tuple[PortalSession, dict[str, str]] | Response:
    """A logged-in user's form, its Origin and CSRF token checked (else the answer)."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    form = await read_form(request)
    if not origin_ok(request.headers.get("origin"), own_origin(request)) or \
            not tokens_match(session.csrf_token, form.get("csrf")):
        return refused(request, session)
    return session, form


async def login_form(request: Request) -> dict[str, str] | None:
    """A form posted before login (log in, new password), its Origin and pre-session CSRF
    token checked (None: refused)."""
    form = await read_form(request)
    expected = login_token_of(service(request).signer, request.cookies.get(LOGIN_COOKIE))
    if not origin_ok(request.headers.get("origin"), own_origin(request)) or \
            not tokens_match(expected, form.get("csrf")):
        return None
    return form


async def start_session(request: Request, user_id: str, to: str = "/") -> Response:
    """A new session for this user (after a login, a first or a changed password), its
    cookie set, the login's cookies dropped; on to ``to``."""
    token, _ = await call(PortalSessionStore(service(request).identities.db).create,
                          user_id, now_ms())
    response = redirect(to)
    set_cookie(response, request, SESSION_COOKIE, token, ABSOLUTE_MS // 1000)
    drop_cookie(response, request, LOGIN_COOKIE)
    drop_cookie(response, request, CHALLENGE_COOKIE)
    return response
