"""The change kinds: one module per kind, each ending in a ``SPEC``
(:class:`ChangeKindSpec`) that holds its payload grammar, how its ``before`` is read,
its verifiers, how it is applied and its approval rules; and the registry of them.

The gateway finds everything kind-specific here through ``GatewayConfig.kinds``
(:data:`CHANGE_KINDS` unless a test swaps in another registry), so a new kind is one
module here plus its tests, and one line below. The kind's name itself is part of
the frozen contract (``ironclaw.contract.enums.ChangeKind``), because the sandbox names
the kind it asks for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.jsonvalue import JSONValue

from . import (
    access,
    chat_policy,
    connect_chat,
    create_agent,
    egress,
    enabled_tools,
    mcp_access,
    model,
    mounts,
    packages,
    permissions,
    persona,
    wiring,
)
from .base import ApplyError as ApplyError
from .base import ApplyJob as ApplyJob
from .base import ChangeContext as ChangeContext
from .base import ChangeKindSpec as ChangeKindSpec
from .base import KindVerifier as KindVerifier


class ChangeKinds(Mapping[ChangeKind, ChangeKindSpec]):
    """Every kind's spec, by kind. Immutable; :meth:`with_spec` gives a new registry."""

    def __init__(self, specs: Iterable[ChangeKindSpec]) -> None:
        self._specs = {spec.kind: spec for spec in specs}

    def __getitem__(self, kind: ChangeKind) -> ChangeKindSpec:
        return self._specs[kind]

    def __iter__(self) -> Iterator[ChangeKind]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def with_spec(self, spec: ChangeKindSpec) -> ChangeKinds:
        """This registry with ``spec`` in place of its kind's spec (or added)."""
        return ChangeKinds([*(s for s in self._specs.values() if s.kind is not spec.kind),
                            spec])

    def never_auto_approved(self) -> frozenset[ChangeKind]:
        return frozenset(k for k, spec in self._specs.items() if not spec.auto_approvable)

    def respawning(self) -> frozenset[ChangeKind]:
        return frozenset(k for k, spec in self._specs.items() if spec.respawns)

    def refused(self) -> dict[ChangeKind, str]:
        """The kinds nothing enforces, each with the reason every request is refused."""
        return {k: spec.refused for k, spec in self._specs.items() if spec.refused}

    def approver_kinds(self) -> frozenset[ChangeKind]:
        return frozenset(k for k, spec in self._specs.items() if spec.approver_may_approve)


CHANGE_KINDS = ChangeKinds(module.SPEC for module in (
    persona, enabled_tools, packages, wiring, permissions, mounts, create_agent, mcp_access,
    egress, access, chat_policy, model, connect_chat))


def parse_payload(kind: ChangeKind, value: JSONValue) -> object:
    """The typed form of ``value`` for ``kind``; raises ``PayloadError``."""
    return CHANGE_KINDS[kind].parse(value)


def grants_owner(kind: ChangeKind, value: JSONValue) -> bool:
    """Approving the change would make someone an owner."""
    return CHANGE_KINDS[kind].grants_owner(value)
