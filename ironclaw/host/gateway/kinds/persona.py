"""``persona``: ``{"identity"?, "soul"?, "instructions"?}`` (at least one), merged into
the agent group's persona."""

from __future__ import annotations

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import queries as q

from ..payloads import MAX_DOC_CHARS, PayloadError, expect_object, expect_text
from .base import ApplyJob, ChangeKindSpec, Conn

PERSONA_DOCS = ("identity", "soul", "instructions")


def parse_persona(value: JSONValue, *, allow_empty: bool = False) -> dict[str, str]:
    obj = expect_object(value, "persona", PERSONA_DOCS)
    if not obj and not allow_empty:
        raise PayloadError("persona names none of identity, soul, instructions")
    return {key: expect_text(doc, f"persona.{key}", MAX_DOC_CHARS)
            for key, doc in obj.items()}


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    docs = parse_persona(after)
    persona = q.get_agent_group(conn, group).persona
    return {key: getattr(persona, key) for key in docs}


def apply(job: ApplyJob) -> int:
    docs = parse_persona(job.after)
    group = job.agent_group()
    q.put_agent_group(job.conn, attrs.evolve(group, persona=attrs.evolve(group.persona, **docs)),
                      job.now)
    return len(docs)


SPEC = ChangeKindSpec(
    kind=ChangeKind.PERSONA, parse=parse_persona, read_before=read_before, apply=apply,
    auto_approvable=True, respawns=True, approver_may_approve=True)
