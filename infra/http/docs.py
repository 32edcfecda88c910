"""The interactive API docs (/docs: Swagger UI, /redoc: ReDoc) served from assets installed with the
app (the fastapi-offline package ships swagger-ui and redoc), so they work without internet: the
pages reference nothing but /docs-assets/* and /openapi.json."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def install(api: FastAPI) -> None:
    """Mount the assets and the two pages (the app is created with docs_url=None, redoc_url=None)."""
    api.mount(ASSETS, StaticFiles(directory=str(resources.files("fastapi_offline") / "static")), name="docs-assets")
    openapi_url = api.openapi_url or "/openapi.json"

    @api.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{api.title} - API docs",
                                   oauth2_redirect_url=None,  # bearer tokens only: no OAuth2 flow to return from
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png",
                                   swagger_ui_parameters={"persistAuthorization": True, "displayOperationId": True})

    @api.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{api.title} - API reference",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png",
                              with_google_fonts=False)
