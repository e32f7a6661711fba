"""The admin endpoints' door: a bearer token from `ADMIN_TOKEN`, checked in constant time.

Admin endpoints change how a running service routes or takes messages (a
planned queue switch), so they are closed unless a token is set: without
`ADMIN_TOKEN` every call is a 401 saying so. The scheme is declared through
FastAPI's `HTTPBearer`, so the OpenAPI schema shows which operations need it.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from services.errors import ApiError
from services.models import ErrorBody

admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="ADMIN_TOKEN of the service")
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]

ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong admin token (or ADMIN_TOKEN not set)"},
    422: {"model": ErrorBody, "description": "invalid body; `details` names each field"},
}


class AdminCheck:
    """Raises a 401 unless the request carries `Authorization: Bearer <ADMIN_TOKEN>`."""

    def __init__(self, token: SecretStr | None) -> None:
        self._token = token.get_secret_value().encode() if token and token.get_secret_value() else None

    def __call__(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self._token is None:
            raise ApiError(401, "admin endpoints are disabled: ADMIN_TOKEN is not set", headers=_CHALLENGE)
        given = credentials.credentials.encode() if credentials is not None else b""
        if not given or not hmac.compare_digest(given, self._token):
            raise ApiError(401, "missing or wrong admin token (Authorization: Bearer)", headers=_CHALLENGE)


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
