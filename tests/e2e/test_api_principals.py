"""A team over real HTTP and ironctl: an owner adds an approver and a viewer, the
approver approves a change and it applies, the viewer is refused; revoking and
rotating take effect at once; nobody but an owner manages principals; every act is
audited with the owner who did it."""

from __future__ import annotations

from typing import Any

from tests.support.api import Api, default_settings, running_api  # noqa: F401

ROUTE = "/v1/principals"


async def test_a_team_flow_through_ironctl(api: Api) -> None:
    from tests.support.ironctl import ironctl

    async def run(*argv: str, token: str | None = None) -> Any:
        return await ironctl(None, "--addr", api.url, "--timeout", "30", *argv,
                             token=token or api.tokens["owner"])

    added = await run("principals", "add", "carol", "--roles", "approver",
                      "--agent-groups", "demo", "--json")
    assert added.code == 0, added.err
    carol = added.json()["token"]
    assert added.json()["roles"] == ["approver"] and carol.startswith("icw_")
    assert added.json()["agent_groups"] == ["demo"]
    elsewhere = await run("principals", "add", "erin", "--roles", "approver,viewer",
                          "--agent-groups", "finance,ops", "--json")
    erin = elsewhere.json()["token"]
    human = await run("principals", "add", "dave", "--roles", "viewer")
    assert human.code == 0 and "shown only this once" in human.err
    dave = human.out.split("token: ", 1)[1].split()[0]

    submitted = await api.post("/v1/changes", {"kind": "persona", "agent_group": "demo",
                                               "payload": {"soul": "A team's agent."}})
    change_id = submitted.json()["id"]
    refused = await run("change", "approve", change_id, token=dave)
    assert refused.code == 3, refused.err
    # An approver scoped to other agent groups may neither decide nor submit here; it
    # does not even see the change (404, as if there were none).
    scoped = await run("change", "reject", change_id, token=erin)
    assert scoped.code == 4 and change_id in scoped.err
    assert (await api.client.post(api.url + "/v1/changes", json={
        "kind": "persona", "agent_group": "demo", "payload": {"soul": "x"}},
        headers={"Authorization": f"Bearer {erin}"})).status_code == 403
    approved = await run("change", "approve", change_id, token=carol)
    assert approved.code == 0, approved.err
    shown = (await api.get(f"/v1/changes/{change_id}")).json()
    assert (shown["status"], shown["decision"]["decided_by"]) == ("applied", "carol")

    # An approver may not manage the team, nor may a viewer read it.
    assert (await run("principals", "list", token=carol)).code == 3
    assert (await run("principals", "add", "eve", "--roles", "admin", token=carol)
            ).code == 3
    # Bad input: a clear error, a usage exit code, nothing sent.
    bad = await run("principals", "add", "eve", "--roles", "owner")
    assert bad.code == 2 and "unknown role 'owner'" in bad.err
    taken = await run("principals", "add", "carol", "--roles", "viewer")
    assert taken.code == 5 and "already exists" in taken.err

    rotated = await run("principals", "rotate", "dave", "--json")
    assert rotated.code == 0, rotated.err
    new_dave = rotated.json()["token"]
    assert new_dave != dave
    assert (await run("status", "--json", token=dave)).code != 0
    whoami = await api.client.get(api.url + "/v1/whoami",
                                  headers={"Authorization": f"Bearer {new_dave}"})
    assert whoami.json() == {"name": "dave", "roles": ["viewer"]}

    revoked = await run("principals", "revoke", "carol")
    assert revoked.code == 0 and "revoked" in revoked.out
    gone = await api.client.get(api.url + "/v1/whoami",
                                headers={"Authorization": f"Bearer {carol}"})
    assert gone.status_code == 401
    assert (await run("principals", "revoke", "carol")).code == 5
    assert (await run("principals", "rotate", "nobody")).code == 4

    listed = {p["name"]: p for p in (await run("principals", "list", "--json")
                                     ).json()["principals"]}
    assert listed["carol"]["revoked_at"] is not None
    assert listed["dave"]["revoked_at"] is None and listed["dave"]["roles"] == ["viewer"]
    assert (listed["dave"]["agent_groups"], listed["erin"]["agent_groups"]) == \
        (None, ["finance", "ops"])
    table = await run("principals", "list")
    assert "finance,ops" in table.out and "(all)" in table.out

    entries = (await api.get("/v1/audit", params={"limit": 200})).json()["entries"]
    acts = [(e["kind"], e["fields"].get("principal"), e["fields"].get("by"))
            for e in entries if e["kind"].startswith("api.principal_")]
    assert acts[-5:] == [("api.principal_created", "carol", "owner"),
                         ("api.principal_created", "erin", "owner"),
                         ("api.principal_created", "dave", "owner"),
                         ("api.principal_rotated", "dave", "owner"),
                         ("api.principal_revoked", "carol", "owner")]


async def test_the_routes_refuse_bad_input_and_other_roles(api: Api) -> None:
    for who in ("admin", "approver", "viewer"):
        assert (await api.get(ROUTE, who=who)).status_code == 403, who
    assert (await api.post(ROUTE, {"name": "x1", "roles": ["admin"]}, who="admin")
            ).status_code == 403
    for body in ({"name": "x1", "roles": ["owner"]}, {"name": "x1"},
                 {"name": "bad name", "roles": ["viewer"]}):
        assert (await api.post(ROUTE, body)).status_code == 400, body
    assert (await api.post(ROUTE, {"name": "x1", "roles": []})).status_code == 422
    assert (await api.post(ROUTE, {"name": "x1", "roles": ["viewer"], "agent_groups": []})
            ).status_code == 422
    assert (await api.post(ROUTE, {"name": "x1", "roles": ["viewer"],
                                   "agent_groups": ["no/slash"]})).status_code == 400
    assert (await api.post(ROUTE, {"name": "system", "roles": ["viewer"]})
            ).status_code == 422
    own = await api.client.delete(api.url + f"{ROUTE}/owner", headers=api.auth())
    assert own.status_code == 409
    missing = await api.client.delete(api.url + f"{ROUTE}/nobody", headers=api.auth())
    assert missing.status_code == 404
