"""Interactive API docs at /api/docs: swagger-ui from an installed package, under the pages' CSP.

FastAPI's own docs page loads swagger-ui from a CDN without integrity hashes, on this origin: the CDN
(or anyone who subverts it) would run script as the signed-in user. It also starts swagger-ui with an
inline script, which the pages' Content-Security-Policy forbids. Here swagger-ui's files come from
the fastapi-offline package (a vendored swagger-ui 5, which reads OpenAPI 3.1), are served by the app
itself, and are started by a file of ours (frontend/static/js/api_docs.js). Off in production unless
AQPL_API_DOCS=true; /openapi.json stays, for API clients.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from backend.settings import Settings
from backend.ui.pages import SECURITY_HEADERS, StaticAssets

DOCS_PATH = "/api/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
SWAGGER_UI_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"


def docs_page(title: str, openapi_url: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{escape(title)} API</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>
  <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
  <script src="/static/js/api_docs.js"></script>
</body>
</html>
"""


def install_api_docs(app: FastAPI, settings: Settings) -> None:
    """Serve the docs page and swagger-ui's files, when the settings ask for them."""
    if not settings.api_docs_enabled or app.openapi_url is None:
        return
    page = docs_page(app.title, app.openapi_url)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def api_docs() -> HTMLResponse:  # async: no I/O, so no thread-pool hop
        return HTMLResponse(page, headers=SECURITY_HEADERS)

    app.mount(ASSETS_PATH, StaticAssets(directory=SWAGGER_UI_DIR), name="api-docs-assets")
