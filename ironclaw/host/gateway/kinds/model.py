"""``model``: ``{"provider"?, "model"?}`` (at least one), moving an existing agent group
to another provider or model. The provider must be one this host holds credentials
for (``GatewayConfig.providers``, which the plane fills from its credentials), so an
approved move never leaves an agent that cannot call its model; live sandboxes are
respawned, since the provider and model are in the agent's configuration file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import queries as q

from ..payloads import PayloadError, expect_object, expect_text
from .base import ApplyJob, ChangeContext, ChangeKindSpec, Conn, KindVerifier
from .create_agent import MODEL, PROVIDER

if TYPE_CHECKING:
    from ..config import GatewayConfig

FIELDS = ("provider", "model")


def parse_model(value: JSONValue) -> dict[str, str]:
    obj = expect_object(value, "model", FIELDS)
    if not obj:
        raise PayloadError("the model change names neither provider nor model")
    return {key: expect_text(obj[key], key, 128) for key in FIELDS if key in obj}


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    wanted = parse_model(after)
    current = q.get_agent_group(conn, group)
    return {key: getattr(current, key) for key in wanted}


class ModelVerifier(KindVerifier):
    """A well-formed model name, on a provider this host holds credentials for."""

    name = "model"
    kinds = frozenset({ChangeKind.MODEL})

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        del context
        self._providers = config.providers

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        wanted = parse_model(after)
        provider, model = wanted.get("provider"), wanted.get("model")
        if provider is not None:
            if not PROVIDER.fullmatch(provider):
                return f"invalid provider {provider!r:.70}"
            if self._providers is not None and provider not in self._providers:
                usable = ", ".join(sorted(self._providers)) or "none"
                return (f"no provider {provider!r:.70} with credentials on this host "
                        f"(usable: {usable})")
        if model is not None and not MODEL.fullmatch(model):
            return f"invalid model {model!r:.70}"
        return None


def apply(job: ApplyJob) -> int:
    wanted = parse_model(job.after)
    group = job.agent_group()
    q.put_agent_group(job.conn, attrs.evolve(
        group, provider=wanted.get("provider", group.provider),
        model=wanted.get("model", group.model)), job.now)
    return len(wanted)


SPEC = ChangeKindSpec(
    kind=ChangeKind.MODEL, parse=parse_model, read_before=read_before, apply=apply,
    verifiers=(ModelVerifier,), respawns=True)
