"""The API docs, served from the package: ``/docs`` renders on a machine without internet.

FastAPI's default page loads Swagger UI from a CDN, which leaves a blank page
on a mail host without outbound web access; ``fastapi_offline`` ships a
Swagger UI recent enough for FastAPI's OpenAPI 3.1 as package data (only its
assets are used here).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="postroom API",
                               swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS}/favicon.png")


def mount_assets(api: FastAPI) -> None:
    api.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")
