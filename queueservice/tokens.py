"""What we sign with the service's secret: JWTs (HS256) and presigned file URLs.

Two keys are derived from the one secret in the data folder, so a token signature can never
be replayed as a URL signature or the other way round.
"""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any
from urllib.parse import quote

import jwt

from cloudqueue.errors import AuthError, Forbidden

ISSUER = "qick-queue"
USER_CLIENT_ID = "qick-queue-users"
#: the token generation of the user or device when the JWT was issued (see ``revoked``)
GENERATION_CLAIM = "qickqueue:gen"


def revoked(claims: dict[str, Any], row: dict[str, Any]) -> bool:
    """True when a JWT was issued before its user's or device's tokens were revoked.

    Revoking (disable a user, rotate a device's secret) raises ``token_generation`` in the
    row the request's identity is read from anyway, so the check costs no extra lookup and
    no clock comparison (an ``iat`` has whole seconds only). Tokens from before the claim
    existed count as generation 0."""
    return claims.get(GENERATION_CLAIM, 0) != (row.get("token_generation") or 0)


class Signer:
    def __init__(self, secret: bytes):
        self._jwt_key = hmac.new(secret, b"jwt", hashlib.sha256).digest()
        self._url_key = hmac.new(secret, b"files", hashlib.sha256).digest()

    # -- JWTs --------------------------------------------------------------------------
    def issue(self, claims: dict[str, Any], lifetime_s: int) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "iat": now, "exp": now + lifetime_s, "jti": uuid.uuid4().hex,
                **claims}
        return jwt.encode(body, self._jwt_key, algorithm="HS256")

    def user_tokens(self, user: dict, groups: list[str], lifetime_s: int) -> tuple[str, str]:
        """(AccessToken, IdToken) for a user, with Cognito's claim names."""
        common = {"sub": user["user_id"], "email": user["email"], "cognito:groups": groups,
                  GENERATION_CLAIM: user.get("token_generation") or 0}
        access = self.issue({**common, "token_use": "access", "client_id": USER_CLIENT_ID},
                            lifetime_s)
        id_token = self.issue({**common, "token_use": "id", "aud": USER_CLIENT_ID,
                               "client_id": USER_CLIENT_ID}, lifetime_s)
        return access, id_token

    def device_token(self, device: dict, lifetime_s: int) -> str:
        return self.issue({"sub": device["device_id"], "client_id": device["client_id"],
                           "token_use": "access",
                           GENERATION_CLAIM: device.get("token_generation") or 0,
                           "scope": "workloadapi/getdevice workloadapi/getdevicework "
                                    "workloadapi/putdevicework workloadapi/updatedevice"},
                          lifetime_s)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token we issued (else AuthError)."""
        try:
            return jwt.decode(token, self._jwt_key, algorithms=["HS256"], issuer=ISSUER,
                              options={"verify_aud": False, "require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired: log in again", kind="unauthorized") from None
        except jwt.PyJWTError:
            raise AuthError("the token is not valid: log in again") from None

    # -- presigned URLs ----------------------------------------------------------------
    def _signature(self, method: str, key: str, expires: int) -> str:
        message = f"{method}\n{key}\n{expires}".encode()
        return hmac.new(self._url_key, message, hashlib.sha256).hexdigest()

    def presign(self, root: str, method: str, key: str, lifetime_s: int) -> str:
        """``{root}/files/{key}?Expires=..&Signature=..`` valid for ``method`` only."""
        expires = int(time.time()) + lifetime_s
        signature = self._signature(method, key, expires)
        return f"{root.rstrip('/')}/files/{quote(key)}?Expires={expires}&Signature={signature}"

    def check_url(self, method: str, key: str, expires: str | None,
                  signature: str | None) -> None:
        """Raise Forbidden (``bad_signature`` / ``url_expired``) unless the URL is good."""
        if not (expires and signature and expires.isascii() and expires.isdigit()
                and len(expires) <= 12 and signature.isascii()):
            raise Forbidden("this file URL is not signed: ask the service for a new URL",
                            kind="bad_signature")
        expected = self._signature(method, key, int(expires))
        if not hmac.compare_digest(expected, signature):
            raise Forbidden("this file URL's signature is wrong (altered, or for another "
                            "method): ask the service for a new URL", kind="bad_signature")
        if int(expires) < time.time():
            raise Forbidden("this file URL has expired: ask the service for a new URL",
                            kind="url_expired")
