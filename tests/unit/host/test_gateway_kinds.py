"""Change kinds live one to a module: the registry is the gateway's only way to them.

A throwaway kind, registered in place of a real one, goes through request, verdict,
approval and apply with its own grammar, ``before``, verifier and applier, which
proves that nothing else in the gateway decides anything by kind.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from ironclaw.contract.enums import ChangeKind, ChangeStatus
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.gateway import kinds
from ironclaw.host.gateway.kinds import CHANGE_KINDS, ApplyJob, ChangeKindSpec, KindVerifier
from ironclaw.host.gateway.kinds.base import ChangeContext, Conn
from ironclaw.host.gateway.payloads import expect_object, expect_text
from tests.support.gateway import CONFIG, OWNER, open_gateway

GATEWAY = Path(kinds.__file__).resolve().parent.parent
# The actor's entry points raise changes of a given kind (an action the contract does
# not know, as an opaque permissions change; the router's access request) and decide
# nothing by it, so they may name the kind they raise.
RAISES_KINDS = GATEWAY / "gateway.py"


def test_every_kind_has_one_module_and_is_named_nowhere_else_in_the_gateway() -> None:
    assert set(CHANGE_KINDS) == set(ChangeKind)
    for kind in ChangeKind:
        module = GATEWAY / "kinds" / f"{kind.value}.py"
        assert module.is_file(), kind
        assert CHANGE_KINDS[kind].kind is kind
        naming = re.compile(rf"ChangeKind\.{kind.name}\b")
        elsewhere = [path.relative_to(GATEWAY) for path in GATEWAY.rglob("*.py")
                     if path not in (module, RAISES_KINDS) and naming.search(path.read_text())]
        assert elsewhere == [], f"{kind.value} is named outside its module: {elsewhere}"


# The throwaway kind: a note appended to a table of the test's own.

def parse_note(value: JSONValue) -> str:
    return expect_text(expect_object(value, "note", ("text",), ("text",))["text"], "note", 80)


def notes_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    parse_note(after)
    rows = conn.execute("SELECT text FROM throwaway_notes WHERE agent_group = ? ORDER BY rowid",
                        (group,))
    return {"notes": [text for (text,) in rows]}


def apply_note(job: ApplyJob) -> int:
    job.conn.execute("INSERT INTO throwaway_notes (agent_group, text) VALUES (?, ?)",
                     (job.group, parse_note(job.after)))
    return 1


class NoNoVerifier(KindVerifier):
    name = "throwaway"
    kinds = frozenset({ChangeKind.PACKAGES})

    def __init__(self, context: ChangeContext, config: object) -> None:
        del context, config

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        return "a note may not say no" if "no" in parse_note(after).split() else None


THROWAWAY = ChangeKindSpec(kind=ChangeKind.PACKAGES, parse=parse_note,
                           read_before=notes_before, apply=apply_note,
                           verifiers=(NoNoVerifier,), respawns=True)


def create_notes(conn: Conn) -> None:
    conn.execute("CREATE TABLE throwaway_notes (agent_group TEXT NOT NULL, text TEXT NOT NULL)")
    conn.execute("INSERT INTO throwaway_notes VALUES ('demo', 'first')")


def notes(conn: Conn) -> list[str]:
    return [text for (text,) in conn.execute("SELECT text FROM throwaway_notes ORDER BY rowid")]


async def test_a_registered_kind_runs_through_request_approval_and_apply(tmp_path: Path
                                                                          ) -> None:
    config = attrs.evolve(CONFIG, kinds=CHANGE_KINDS.with_spec(THROWAWAY))
    async with open_gateway(tmp_path / "host.db", config=config) as h:
        await h.store.transaction(create_notes)
        kind = ChangeKind.PACKAGES

        refused = await h.gateway.submit(kind, "demo", {"text": "no way"}, requested_by=OWNER)
        assert refused.status is ChangeStatus.REJECTED
        assert h.audit.find("change.verdict", refused.change.id)[0]["verifier"] == "throwaway"
        shaped_for_the_real_kind = await h.gateway.submit(kind, "demo", {"apt": ["curl"]},
                                                          requested_by=OWNER)
        assert shaped_for_the_real_kind.status is ChangeStatus.REJECTED

        held = await h.gateway.submit(kind, "demo", {"text": "hello"}, requested_by=OWNER)
        assert held.status is ChangeStatus.PENDING
        assert held.change.before == '{"notes":["first"]}'
        assert await h.store.call(notes) == ["first"]

        applied = await h.gateway.decide(held.change.id, "approve", OWNER)
        assert applied.status is ChangeStatus.APPLIED
        assert await h.store.call(notes) == ["first", "hello"]
        assert h.audit.find("change.apply", held.change.id)[0]["effects"] == 1
        assert h.respawner.calls == [("demo", f"change {held.change.id} (packages) applied")]
