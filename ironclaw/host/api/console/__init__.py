"""The web console: static files served at ``/ui/``, with the headers that lock it down.

The console is plain ES modules, an HTML page and a style sheet shipped inside this
package (``assets/``): nothing is built, nothing is fetched from anywhere else at run
time. The page needs no token to load; everything it shows comes from the API, which
it calls with the token the user pasted (see ``docs/console.md``).

Only the files listed in :data:`ASSETS` are served, read once at import: a name that
is not on the list is a 404, so no path from a request ever reaches the file system.
Every response carries a strict Content-Security-Policy (scripts and styles from this
origin only, no inline script, no framing, connections to this origin only), plus
``nosniff``, ``no-referrer`` and same-origin isolation headers.
"""

from __future__ import annotations

from importlib import resources

from quart import Response
from quart_trio import QuartTrio

from ..context import Access, ApiContext, access
from ..errors import ApiError
from ..scope import Scope, scope

PREFIX = "/ui/"
INDEX = "index.html"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
ASSET_NAMES = ("index.html", "console.css", "main.js", "api.js", "stream.js", "views.js",
               "text.js", "charts.js")

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'",
    "connect-src 'self'", "base-uri 'none'", "form-action 'none'",
    "frame-ancestors 'none'"))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _load() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__) / "assets"
    return {name: ((folder / name).read_bytes(), _TYPES["." + name.rsplit(".", 1)[1]])
            for name in ASSET_NAMES}


ASSETS = _load()


def asset_response(name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        raise ApiError(404, "the console has no such file")
    body, content_type = found
    return Response(body, status=200, content_type=content_type,
                    headers=SECURITY_HEADERS)


def register(app: QuartTrio, ctx: ApiContext) -> None:
    del ctx  # the console's files are the same for everyone; the API decides the rest

    @app.get(PREFIX)
    @access(Access.PUBLIC)
    @scope(Scope.NONE)
    async def console_page() -> Response:
        return asset_response(INDEX)

    @app.get(PREFIX + "<asset>")
    @access(Access.PUBLIC)
    @scope(Scope.NONE)
    async def console_asset(asset: str) -> Response:
        return asset_response(asset)
