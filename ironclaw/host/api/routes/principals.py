"""``/v1/principals``: the team. An owner adds, lists, revokes and re-keys principals.

Only a principal with the ``owner`` role may use these routes (anyone else gets 403):
a principal is a credential, and handing one out is the owner's act. The roles an owner
may grant are ``admin``, ``approver`` and ``viewer``; the owner itself is only ever the
bootstrapped one, so no token minted here can mint another. A token is answered once,
in the response that creates or rotates it, and kept only as its HMAC (see
:mod:`..principals`). Every act is audited with the owner who did it:
``api.principal_created``, ``api.principal_revoked``, ``api.principal_rotated``.

A principal may be scoped to agent groups (``agent_groups``): the gateway then lets it
submit, approve and reject only those groups' changes (see
:mod:`ironclaw.host.gateway.rbac`). The groups need not exist yet.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.host.gateway import Principal
from ironclaw.host.gateway.rbac import OWNER

from ..context import Access, ApiContext, access, principal
from ..errors import ApiError
from ..principals import PrincipalError, PrincipalRevoked
from ..schemas import PRINCIPAL_CREATE
from ..scope import Scope, scope
from ..validate import json_body


def _owner() -> Principal:
    who = principal()
    if OWNER not in who.roles:
        raise ApiError(403, f"only an owner may manage principals; {who.name} is not")
    return who


def register(app: QuartTrio, ctx: ApiContext) -> None:
    principals = ctx.principals

    @app.get("/v1/principals")
    @access(Access.READ)
    @scope(Scope.UNSCOPED)  # owners only, and an owner is never scoped
    async def list_principals() -> dict[str, object]:
        _owner()
        return {"principals": await principals.list()}

    @app.post("/v1/principals")
    @access(Access.WRITE)
    @scope(Scope.UNSCOPED)  # owners only, and an owner is never scoped
    async def create_principal() -> tuple[dict[str, object], int]:
        who = _owner()
        body = await json_body(PRINCIPAL_CREATE, ctx.settings.max_body_bytes)
        roles = sorted(set(body["roles"]))
        if not roles:
            raise ApiError(422, "a principal needs at least one role")
        scope = body.get("agent_groups")
        groups = None if scope is None else sorted(set(scope))
        if groups == []:
            raise ApiError(422, "a scope names one or more agent groups (or is left out)")
        try:
            token = await principals.create(
                body["name"], set(roles), by=who.name,
                agent_groups=None if groups is None else set(groups))
        except PrincipalRevoked as exc:
            raise ApiError(409, str(exc)) from None
        except PrincipalError as exc:
            status = 409 if "already" in str(exc) else 422
            raise ApiError(status, str(exc)) from None
        return {"name": body["name"], "roles": roles, "agent_groups": groups,
                "token": token}, 201

    @app.delete("/v1/principals/<name>")
    @access(Access.WRITE)
    @scope(Scope.UNSCOPED)  # owners only, and an owner is never scoped
    async def revoke_principal(name: str) -> dict[str, object]:
        who = _owner()
        if name == who.name:
            raise ApiError(409, "an owner may not revoke the principal it is using")
        found = await principals.get(name)
        if found is None:
            raise ApiError(404, f"no principal {name[:64]!r}")
        if found["revoked_at"] is not None:
            raise ApiError(409, f"principal {name!r} is already revoked")
        await principals.revoke(name, by=who.name)
        return {"name": name, "revoked": True}

    @app.post("/v1/principals/<name>/rotate")
    @access(Access.WRITE)
    @scope(Scope.UNSCOPED)  # owners only, and an owner is never scoped
    async def rotate_principal(name: str) -> dict[str, object]:
        who = _owner()
        found = await principals.get(name)
        if found is None:
            raise ApiError(404, f"no principal {name[:64]!r}")
        if found["revoked_at"] is not None:
            raise ApiError(409, f"principal {name!r} is revoked and stays revoked")
        token = await principals.rotate(name, by=who.name)
        if token is None:  # revoked between the look and the re-key
            raise ApiError(409, f"principal {name!r} is revoked and stays revoked")
        roles = found["roles"]
        return {"name": name, "roles": roles if isinstance(roles, list) else [],
                "agent_groups": found["agent_groups"], "token": token}
