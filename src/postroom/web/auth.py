"""Who is calling: a tenant's API key (Bearer) or the operator (token from configuration).

A tenant key only ever yields a ``Principal``; every API query filters on its
``tenant_id``. The operator token unlocks the global console and operator
API; the console keeps an HMAC of it in a cookie rather than the token itself.

``web.limits.Gate`` runs these checks for every /api request before a byte of
its body is read, and leaves the principal in ``request.state``; the
dependencies below reuse it (and check again when it is missing).
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from postroom.app import App
from postroom.storage import apikeys
from postroom.storage.apikeys import Principal
from postroom.web.deps import get_app

CONSOLE_COOKIE = "postroom_console"
CHALLENGE = {"WWW-Authenticate": "Bearer"}

tenant_bearer = HTTPBearer(auto_error=False, scheme_name="TenantKey",
                           description="A tenant API key from `postroom apikey create TENANT`.")
operator_bearer = HTTPBearer(auto_error=False, scheme_name="OperatorToken",
                             description="The operator token (POSTROOM_OPERATOR_TOKEN).")
console_cookie = APIKeyCookie(name=CONSOLE_COOKIE, auto_error=False, scheme_name="ConsoleCookie")


def bearer_token(request: Request) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header, as HTTPBearer reads them."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else None


def authenticate_tenant(app: App, key: str | None) -> Principal:
    """The principal of a live tenant key; HTTPException 401 otherwise."""
    if key is None:
        raise HTTPException(401, "send a tenant API key as 'Authorization: Bearer KEY'", headers=CHALLENGE)
    with app.session() as session:
        principal = apikeys.authenticate(session, key)
    if principal is None:
        raise HTTPException(401, "API key is invalid or revoked", headers=CHALLENGE)
    return principal


def tenant_principal(request: Request,
                     credentials: HTTPAuthorizationCredentials | None = Security(tenant_bearer)) -> Principal:
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    return authenticate_tenant(get_app(request), credentials.credentials if credentials else None)


def console_session_value(token: str) -> str:
    """What the console cookie holds: derived from the token, useless elsewhere."""
    return hmac.new(token.encode(), b"postroom-console-session", hashlib.sha256).hexdigest()


def is_operator(request: Request, bearer: str | None, cookie: str | None) -> bool:
    token = get_app(request).settings.operator_token
    if not token:
        return False
    if bearer is not None and hmac.compare_digest(bearer.encode(), token.encode()):
        return True
    return cookie is not None and hmac.compare_digest(cookie.encode(), console_session_value(token).encode())


def check_operator(request: Request) -> None:
    """HTTPException 403 when operator access is off, 401 without the token (bearer or console cookie)."""
    if not get_app(request).settings.operator_token:
        raise HTTPException(403, "operator access is disabled: set POSTROOM_OPERATOR_TOKEN")
    if not is_operator(request, bearer_token(request), request.cookies.get(CONSOLE_COOKIE)):
        raise HTTPException(401, "send the operator token as 'Authorization: Bearer TOKEN'", headers=CHALLENGE)


def require_operator(request: Request,
                     credentials: HTTPAuthorizationCredentials | None = Security(operator_bearer),
                     cookie: str | None = Security(console_cookie)) -> None:
    """The operator API's dependency; the security parameters document both ways in for OpenAPI."""
    check_operator(request)
