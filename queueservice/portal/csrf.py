"""The portal's CSRF checks: a state-changing request (POST) carries the session's token
in a hidden form field, compared in constant time, and its ``Origin`` header, when the
browser sends one, is the service's own. Before login the token lives in a short-lived
signed cookie (``login_cookie`` / ``login_token_of``), since there is no session yet."""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from cloudqueue.errors import AuthError
from queueservice.tokens import Signer

#: how long a login form stays usable (its pre-session CSRF token's lifetime)
LOGIN_FORM_SECONDS = 3600
_LOGIN_USE = "portal_login"


def tokens_match(expected: str, given: str | None) -> bool:
    """The form's token is the session's (constant time; an empty one never matches)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower case, default ports dropped."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_ok(origin: str | None, own: str) -> bool:
    """The request's ``Origin`` is the service's own origin (absent: nothing to check;
    ``null``, from a sandboxed frame or a redirect chain, is refused)."""
    if origin is None:
        return True
    if origin.strip().lower() == "null":
        return False
    return origin_of(origin) == origin_of(own)


def login_cookie(signer: Signer) -> tuple[str, str]:
    """A new login form's CSRF token and the signed cookie that carries it."""
    token = secrets.token_urlsafe(32)
    return token, signer.issue({"sub": "login-form", "token_use": _LOGIN_USE, "csrf": token},
                               LOGIN_FORM_SECONDS)


def login_token_of(signer: Signer, cookie: str | None) -> str:
    """The CSRF token a login cookie carries ('' when missing, expired or forged)."""
    if not cookie:
        return ""
    try:
        claims = signer.verify(cookie)
    except AuthError:
        return ""
    if claims.get("token_use") != _LOGIN_USE or not isinstance(claims.get("csrf"), str):
        return ""
    return claims["csrf"]
