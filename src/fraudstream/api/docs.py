"""The interactive API documentation: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

FastAPI's own pages load their scripts and styles from a CDN, so on a server or a laptop without
internet they stay blank. These are the same pages with their assets served by the API itself, from
the ``openapi-ui-bundles`` package, under ``/docs/assets``; ReDoc without Google's fonts. The pages are
open to anyone who can reach the API, as the OpenAPI document they render is.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

DOCS, REDOC, OAUTH2_REDIRECT = "/docs", "/redoc", "/docs/oauth2-redirect"
ASSETS = "/docs/assets"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
"""The one address ReDoc's script loads by itself (the logo of its "API docs by Redocly" line): the
script is served with it pointing at the bundle's own copy."""


def install(app: FastAPI) -> None:
    """Serve the two pages and their assets on ``app`` (built with ``docs_url=None, redoc_url=None``)."""
    from openapi_ui_bundles import redoc, swagger_ui  # the assets, found only when the pages are served

    @app.get(f"{ASSETS}/redoc/redoc.standalone.js", include_in_schema=False)  # before the mount below
    async def redoc_script(request: Request) -> Response:
        script = _redoc_script(Path(redoc.static_path), f"{_root(request)}{ASSETS}/redoc/logo-mini.svg")
        return Response(script, media_type="text/javascript")

    app.mount(f"{ASSETS}/swagger-ui", StaticFiles(directory=swagger_ui.static_path), name="swagger-ui-assets")
    app.mount(f"{ASSETS}/redoc", StaticFiles(directory=redoc.static_path), name="redoc-assets")

    @app.get(DOCS, include_in_schema=False)
    async def swagger_ui_page(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/swagger-ui/favicon-32x32.png",
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC, include_in_schema=False)
    async def redoc_page(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/redoc/logo-mini.svg",
            with_google_fonts=False,
        )


@cache
def _redoc_script(folder: Path, logo: str) -> bytes:
    return (folder / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO.encode(), logo.encode())


def _root(request: Request) -> str:
    """The path the API is mounted under behind a proxy (uvicorn's ``--root-path``), as FastAPI's own
    pages use it."""
    return str(request.scope.get("root_path", "")).rstrip("/")
