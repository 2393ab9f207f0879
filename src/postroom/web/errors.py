"""One JSON error shape for every failure: ``{"error": {"status", "message", "fields"}}``.

Validation errors name each offending field and where it was sent (path,
query, body), so a portal developer can fix the request without the docs.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from postroom.errors import NotFound, PostroomError

log = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str
    location: str
    message: str


class ErrorDetail(BaseModel):
    status: int
    message: str
    fields: list[FieldError] = []


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in ((400, "The request cannot be carried out"), (401, "Missing or invalid credentials"),
                       (404, "Not found (or not this tenant's)"), (422, "A field is missing or invalid"))
}


def error_response(status: int, message: str, fields: list[FieldError] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(status=status, message=message, fields=fields or []))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    fields = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        location, path = (loc[0], loc[1:]) if loc and loc[0] in ("body", "query", "path", "header", "cookie") \
            else ("body", loc)
        fields.append(FieldError(field=".".join(path) or location, location=location, message=err.get("msg", "")))
    return fields


def nul_fields(request: Request, body: bytes) -> list[FieldError]:
    """Query parameters and JSON body text carrying a NUL: no database text column can store one."""
    fields = [FieldError(field=name, location="query", message="must not contain NUL characters")
              for name, value in request.query_params.multi_items() if "\x00" in value]
    if request.headers.get("content-type", "").startswith("application/json") and b"\\u0000" in body:
        fields.append(FieldError(field="body", location="body", message="must not contain NUL characters"))
    return fields


def install(api: FastAPI) -> None:
    @api.middleware("http")
    async def refuse_nul(request: Request, call_next):  # type: ignore[no-untyped-def]
        fields = nul_fields(request, await request.body())
        if fields:
            return error_response(422, "invalid request: NUL characters are not allowed", fields)
        return await call_next(request)

    @api.exception_handler(DataError)
    async def unstorable(_: Request, exc: DataError) -> JSONResponse:
        log.warning("refused a value the database cannot store: %s", exc.orig)
        return error_response(422, "a value was refused by the database (too large or not storable text)")

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        summary = "; ".join(f"{f.field}: {f.message}" for f in fields)
        return error_response(422, f"invalid request: {summary}", fields)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @api.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc))

    @api.exception_handler(PostroomError)
    async def refused(_: Request, exc: PostroomError) -> JSONResponse:
        return error_response(400, str(exc))

    @api.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the operator's log has the details")
