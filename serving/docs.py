"""The OpenAPI docs page, served offline."""

from __future__ import annotations

from pathlib import Path

from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

#: Where the service serves Swagger UI's files (from the swagger-ui-py package): the API
#: docs work on networks that block public CDNs, and no request leaves the origin.
DOCS_ASSETS = "/schema/assets"


def offline_swagger_ui() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>",
        path="/",
    )


def docs_assets() -> Router:
    """Swagger UI 5 (OpenAPI 3.1, which Litestar writes) as the swagger-ui-py wheel ships it,
    with its Apache-2.0 licence at ``/schema/assets/LICENSE``."""
    from importlib import resources

    static = Path(str(resources.files("swagger_ui") / "static"))
    return create_static_files_router(
        path=DOCS_ASSETS, directories=[static], include_in_schema=False
    )
