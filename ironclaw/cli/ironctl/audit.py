"""``ironctl audit``: tail, verify (non-zero exit when the chain is broken), export."""

from __future__ import annotations

import codecs

from .client import FAILED, OK
from .context import Ctx
from .output import Column, key_values, when

AUDIT_COLUMNS: list[Column] = [
    ("SEQ", lambda e: e.get("seq")),
    ("AT", lambda e: when(e.get("at"))),
    ("KIND", lambda e: e.get("kind")),
    ("FIELDS", lambda e: key_values(e.get("fields") or {}, limit=60)),
]


async def cmd_tail(ctx: Ctx) -> int:
    found = await ctx.api.get("/v1/audit", limit=ctx.args.limit)
    if ctx.json_mode:
        ctx.console.json(found)
    else:
        ctx.console.table(list(found.get("entries", [])), AUDIT_COLUMNS,
                          empty="(the audit log is empty)")
    return OK


async def cmd_verify(ctx: Ctx) -> int:
    report = await ctx.api.get("/v1/audit/verify")
    ok = report.get("ok") is True
    problems = [str(p) for p in report.get("problems") or []]
    if ctx.json_mode:
        ctx.console.json(report)
    elif ok:
        ctx.console.line(f"audit log OK: {report.get('entries')} entries, last seq "
                         f"{report.get('last_seq')}")
    else:
        ctx.console.line(f"audit log FAILED verification ({report.get('entries')} entries "
                         f"checked, {len(problems)} problem(s)):")
        for problem in problems or ["(the API gave no detail)"]:
            ctx.console.line(f"  - {problem}")
    return OK if ok else FAILED


async def cmd_export(ctx: Ctx) -> int:
    """Stream NDJSON to stdout as it arrives (the same bytes in ``--json`` mode)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    async with ctx.api.stream("/v1/audit/export", after_seq=ctx.args.after) as response:
        async for chunk in response.aiter_bytes():
            text = decoder.decode(chunk)
            if text:
                ctx.console.raw(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        ctx.console.raw(tail)
    return OK
