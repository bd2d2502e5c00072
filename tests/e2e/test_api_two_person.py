"""The two-person rule over real HTTP and ironctl: the submitter's own approval is
refused, a first approval leaves the change pending and is shown, a second, different
principal applies it."""

from __future__ import annotations

from ironclaw.host.gateway import GatewayConfig
from tests.support.api import Api, default_settings, running_api  # noqa: F401

GATEWAY = GatewayConfig(two_approvers={"persona"})


async def test_two_distinct_approvers_through_the_api_and_ironctl(api: Api) -> None:
    from tests.support.ironctl import ironctl

    submitted = await api.post("/v1/changes", {"kind": "persona", "agent_group": "demo",
                                               "payload": {"soul": "Two minds."}})
    assert submitted.status_code == 202
    change = f"/v1/changes/{submitted.json()['id']}"
    own = await api.post(change + "/decision", {"outcome": "approve"})
    assert own.status_code == 403 and "two-person rule" in own.json()["detail"]

    first = await ironctl(None, "--addr", api.url, "--timeout", "30", "change", "approve",
                          submitted.json()["id"], token=api.tokens["admin"])
    assert first.code == 0 and "needs a second, different approver" in first.out
    shown = await api.get(change)
    assert (shown.json()["status"], shown.json()["approvals"]) == ("pending", ["admin"])
    again = await api.post(change + "/decision", {"outcome": "approve"}, who="admin")
    assert again.status_code == 409
    view = await ironctl(None, "--addr", api.url, "--timeout", "30", "change", "show",
                         submitted.json()["id"], token=api.tokens["viewer"])
    assert "approved by   admin (waits for a second approver)" in view.out, view.out

    done = await api.post(change + "/decision", {"outcome": "approve"}, who="approver")
    assert done.status_code == 200
    body = done.json()
    assert (body["status"], body["decision"]["decided_by"], body["approvals"]) == \
        ("applied", "approver", [])
    assert (await api.handles.registry.get_agent_group("demo")).persona.soul == "Two minds."
