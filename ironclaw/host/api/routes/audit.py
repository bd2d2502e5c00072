"""``/v1/audit``: the tamper-evident log's tail, its verification, and an NDJSON export.

Entries hold ids and counts only, so any principal may read them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator

from quart import Response
from quart_trio import QuartTrio

from ironclaw.host.audit import MAX_TAIL

from .. import render
from ..context import Access, ApiContext, access, principal
from ..scope import Scope, Visibility, scope
from ..validate import query_int

MAX_SEQ = 2**63 - 1
NDJSON = "application/x-ndjson"


def register(app: QuartTrio, ctx: ApiContext) -> None:
    audit = ctx.handles.audit

    @app.get("/v1/audit")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def audit_tail() -> dict[str, object]:
        limit = query_int("limit", 100, 1, MAX_TAIL)
        seen = Visibility.of(principal(), ctx.handles)
        if seen.everything:
            return {"entries": [render.audit_entry(e) for e in await audit.tail(limit)]}
        # The limit counts after the filter (as tasks and questions do), over the
        # longest window the log reads: the newest ``limit`` entries the scope sees.
        shown = [e for e in await audit.tail(MAX_TAIL) if await seen.fields(e.fields)]
        return {"entries": [render.audit_entry(e) for e in shown[-limit:]]}

    @app.get("/v1/audit/verify")
    @access(Access.READ)
    @scope(Scope.UNSCOPED)  # it reads every entry, and says how many there are
    async def audit_verify() -> dict[str, object]:
        report = await audit.verify()
        return {"ok": report.ok, "entries": report.entries,
                "problems": list(report.problems), "last_seq": report.last_seq}

    @app.get("/v1/audit/export")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def audit_export() -> Response:
        after = query_int("after_seq", 0, 0, MAX_SEQ)
        seen = Visibility.of(principal(), ctx.handles)
        chunks = audit.export(after) if seen.everything else _only_seen(audit.export(after),
                                                                         seen)
        # Fetch the first chunk now, so an error is a proper response, not a cut stream.
        first = b""
        with contextlib.suppress(StopAsyncIteration):
            first = await chunks.__anext__()

        async def body() -> AsyncGenerator[bytes, None]:
            async with contextlib.aclosing(chunks):
                if first:
                    yield first
                async for chunk in chunks:
                    yield chunk

        response = Response(body(), status=200, content_type=NDJSON)
        response.timeout = None  # a long log may take longer than the default
        return response


async def _only_seen(chunks: AsyncGenerator[bytes, None], seen: Visibility
                     ) -> AsyncGenerator[bytes, None]:
    """The export's lines about the principal's groups (a chunk may end mid-line)."""
    rest = b""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            *lines, rest = (rest + chunk).split(b"\n")
            kept = [line for line in lines if await _line_seen(line, seen)]
            if kept:
                yield b"".join(line + b"\n" for line in kept)


async def _line_seen(line: bytes, seen: Visibility) -> bool:
    try:
        fields = json.loads(line).get("fields")
    except (ValueError, AttributeError):
        return False  # the log wrote it, so this never happens; hide, never guess
    return isinstance(fields, dict) and await seen.fields(fields)
