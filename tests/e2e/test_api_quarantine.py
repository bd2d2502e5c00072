"""``/v1/quarantine`` over real HTTP, and ``ironctl quarantine``: anyone reads the
holds, only an owner principal lifts one, and the lift is audited with who did it."""

from __future__ import annotations

from typing import Any

import trio

from tests.support.api import Api, default_settings, running_api  # noqa: F401

ROUTE = "/v1/quarantine"


async def test_only_an_owner_lifts_a_quarantine(api: Api) -> None:
    assert (await api.get(ROUTE, who="viewer")).json() == {"sessions": []}
    missing = await api.post(f"{ROUTE}/ses_nothing/lift", {})
    assert missing.status_code == 404
    event = api.handles.quarantine.hold("ses_held", "demo", "QueueSchemaError: extra: x")
    assert event is not None
    (listed,) = (await api.get(ROUTE, who="viewer")).json()["sessions"]
    assert (listed["session_id"], listed["agent_group_id"], listed["reason"]) == \
        ("ses_held", "demo", "QueueSchemaError: extra: x")
    for who in ("viewer", "approver", "admin"):
        refused = await api.post(f"{ROUTE}/ses_held/lift", {}, who=who)
        assert refused.status_code == 403, who
    assert api.handles.quarantine.held("ses_held") is not None
    lifted = await api.post(f"{ROUTE}/ses_held/lift", {})
    assert lifted.status_code == 200
    assert lifted.json() == {"session_id": "ses_held", "agent_group_id": "demo",
                             "lifted": True}
    assert api.handles.quarantine.held("ses_held") is None
    assert (await api.post(f"{ROUTE}/ses_held/lift", {})).status_code == 404
    # The audit recorder writes what the event bus carries, a moment after the answer.
    with trio.fail_after(10):
        while not (lifts := await _audited_lifts(api)):  # noqa: ASYNC110 (an HTTP API)
            await trio.sleep(0.05)
    assert lifts == [{"session_id": "ses_held", "agent_group_id": "demo", "by": "owner"}]


async def _audited_lifts(api: Api) -> list[dict[str, object]]:
    entries = (await api.get("/v1/audit", params={"limit": 50})).json()["entries"]
    return [e["fields"] for e in entries if e["kind"] == "session.quarantine_lifted"]


async def test_ironctl_lists_and_lifts(api: Api) -> None:
    from tests.support.ironctl import ironctl

    def run(*argv: str, who: str = "owner") -> Any:
        return ironctl(None, "--addr", api.url, "--timeout", "30", *argv,
                       token=api.tokens[who])

    assert "no session is quarantined" in (await run("quarantine", "list")).out
    api.handles.quarantine.hold("ses_held", "demo", "symlink at outbound.db")
    listed = await run("quarantine", "list")
    assert "ses_held" in listed.out and "symlink at outbound.db" in listed.out
    refused = await run("quarantine", "lift", "ses_held", who="admin")
    assert refused.code == 3 and "only an owner" in refused.err
    result = await run("quarantine", "lift", "ses_held")
    assert result.code == 0, result.err
    assert "ses_held" in result.out and "lifted" in result.out
    assert (await run("quarantine", "list", "--json")).json() == {"sessions": []}
