"""The deterministic verifier chain. Never a model: the same change and registry state
always get the same verdict.

Order: a refused kind (one nothing in the host enforces) first, then shape, then
every kind's own verifiers (``kinds/``; each passes the kinds it
does not own), any extra verifiers, and last the human floor. Each verifier rejects a
payload it cannot parse (fail closed, even if used alone). A verifier that raises
counts as a reject.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from ironclaw.contract.enums import Verdict
from ironclaw.contract.gateway import (
    ChangeRequest,
    Verifier,
    VerifierResult,
    chain_verdict,
)
from ironclaw.contract.jsonvalue import JSONValue

from .config import GatewayConfig
from .kinds import ChangeContext, KindVerifier

log = logging.getLogger(__name__)

VERIFIER = "verifier"  # decided_by of a verifier's reject


class RefusedKind:
    """A kind whose spec says it is refused never reaches a human: approving it would
    grant something nothing enforces."""

    name = "refused-kind"

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config

    def verify(self, change: ChangeRequest) -> VerifierResult:
        reason = self._config.kinds[change.kind].refused
        if reason:
            return VerifierResult(self.name, Verdict.REJECT,
                                  f"{change.kind.value} changes are refused: {reason}"[:500])
        return VerifierResult(self.name, Verdict.PASS, "ok")


class ShapeVerifier(KindVerifier):
    """The payload has its kind's shape, and everything it names exists and belongs to
    the change's agent group."""

    name = "shape"

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        self._context = context
        self._config = config

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        spec = self._config.kinds[change.kind]
        parsed = spec.parse(after)
        if spec.needs_existing_group and not self._context.group_exists:
            return f"no agent group {change.agent_group!r:.70}"
        return spec.check_shape(change, parsed, self._context, self._config)


def policy_may_approve(config: GatewayConfig, change: ChangeRequest) -> bool:
    """The opt-in policy. Never for a kind that is not auto-approvable, whatever the
    config says."""
    if not config.kinds[change.kind].auto_approvable or change.kind not in config.auto_approve:
        return False
    return config.auto_approve_from_sandbox or not change.requested_by.startswith("session:")


class HumanFloor:
    """Always last: require a human, unless the opt-in policy covers the change."""

    name = "human-floor"

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config

    def verify(self, change: ChangeRequest) -> VerifierResult:
        if policy_may_approve(self._config, change):
            return VerifierResult(self.name, Verdict.PASS, "approved by policy")
        return VerifierResult(self.name, Verdict.REQUIRE_HUMAN, "a human decides")


def build_chain(context: ChangeContext, config: GatewayConfig,
                extra: Sequence[Verifier] = ()) -> list[Verifier]:
    kind_verifiers = [make(context, config) for spec in config.kinds.values()
                      for make in spec.verifiers]
    return [RefusedKind(config), ShapeVerifier(context, config), *kind_verifiers, *extra,
            HumanFloor(config)]


def _results(chain: Sequence[Verifier], change: ChangeRequest) -> Iterator[VerifierResult]:
    for verifier in chain:
        try:
            yield verifier.verify(change)
        except Exception:
            log.exception("verifier %s failed on change %s", verifier.name, change.id)
            yield VerifierResult(verifier.name, Verdict.REJECT, "the verifier failed")


def run_chain(chain: Sequence[Verifier], change: ChangeRequest
              ) -> tuple[Verdict, VerifierResult | None]:
    """The chain's verdict; a reject short-circuits (later verifiers are not called)."""
    return chain_verdict(_results(chain, change))
