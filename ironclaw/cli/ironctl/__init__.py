"""``ironctl``: the command-line client of the IronClaw control plane's HTTP API.

A pure HTTP client: it speaks the API's wire format (``/v1/...``, ``/healthz``,
``/readyz``, the ``/v1/events`` websocket) and nothing else, so it can drive a
control plane on this machine or, over a tailnet, on another one.

Global options: ``--addr`` (env ``IRONCLAW_API_ADDR``, default
``http://127.0.0.1:8787``), ``--token`` / ``--token-file`` (env ``IRONCLAW_API_TOKEN``;
the token is sent only in the ``Authorization`` header and never printed),
``--json`` and ``--timeout``.

Exit codes: 0 ok, 1 error or failed check, 2 usage, 3 auth (401/403), 4 not found,
5 conflict.
"""

from __future__ import annotations

from .app import main, run

__all__ = ["main", "run"]
