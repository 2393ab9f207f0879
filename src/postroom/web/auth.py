"""Who is calling: a tenant's API key (Bearer) or the operator (token from configuration).

A tenant key only ever yields a ``Principal``; every API query filters on its
``tenant_id``. The operator token unlocks the global console and operator
API; the console keeps an HMAC of it in a cookie rather than the token itself.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from postroom.storage import apikeys
from postroom.storage.apikeys import Principal
from postroom.web.deps import db_session, get_app

CONSOLE_COOKIE = "postroom_console"
CHALLENGE = {"WWW-Authenticate": "Bearer"}

tenant_bearer = HTTPBearer(auto_error=False, scheme_name="TenantKey",
                           description="A tenant API key from `postroom apikey create TENANT`.")
operator_bearer = HTTPBearer(auto_error=False, scheme_name="OperatorToken",
                             description="The operator token (POSTROOM_OPERATOR_TOKEN).")
console_cookie = APIKeyCookie(name=CONSOLE_COOKIE, auto_error=False, scheme_name="ConsoleCookie")


def tenant_principal(credentials: HTTPAuthorizationCredentials | None = Security(tenant_bearer),
                     session: Session = Depends(db_session)) -> Principal:
    if credentials is None:
        raise HTTPException(401, "send a tenant API key as 'Authorization: Bearer KEY'", headers=CHALLENGE)
    principal = apikeys.authenticate(session, credentials.credentials)
    if principal is None:
        raise HTTPException(401, "API key is invalid or revoked", headers=CHALLENGE)
    return principal


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


def require_operator(request: Request,
                     credentials: HTTPAuthorizationCredentials | None = Security(operator_bearer),
                     cookie: str | None = Security(console_cookie)) -> None:
    if not get_app(request).settings.operator_token:
        raise HTTPException(403, "operator access is disabled: set POSTROOM_OPERATOR_TOKEN")
    if not is_operator(request, credentials.credentials if credentials else None, cookie):
        raise HTTPException(401, "send the operator token as 'Authorization: Bearer TOKEN'", headers=CHALLENGE)
