"""The HTTP API and websocket event stream: a quart-trio app served by hypercorn.

Wiring it (the daemon's job)::

    token_key = keystore.subkey(Purpose.API_TOKEN_HASH)
    principals = Principals(handles.store, token_key, audit=handles.audit)
    minted = await bootstrap_owner(principals, env_token=os.environ.get(ENV_TOKEN))
    if minted:
        print(f"owner API token (shown once): {minted}")
    binds = await nursery.start(functools.partial(
        serve_api, handles, ApiSettings(), token_key=token_key))

See :mod:`.app` for the request pipeline, :mod:`.ws.auth` for websocket
authentication, :mod:`.openapi` for the document.
"""

from .openapi import document as openapi_document
from .principals import (
    ENV_TOKEN,
    PrincipalError,
    PrincipalRevoked,
    Principals,
    bootstrap_owner,
)
from .server import serve_api
from .settings import ApiSettings, BindRefused, exposure_warning, is_loopback

__all__ = [
    "ENV_TOKEN",
    "ApiSettings",
    "BindRefused",
    "PrincipalError",
    "PrincipalRevoked",
    "Principals",
    "bootstrap_owner",
    "exposure_warning",
    "is_loopback",
    "openapi_document",
    "serve_api",
]
