"""Whether a provider keeps failing, judged from the calls the proxy relays.

One overloaded answer is a blip the agent's retries absorb; the same failure call after
call (overloaded, out of quota, a revoked key) needs an operator. :class:`ProviderHealth`
counts each provider's run of consecutive failures of one watched kind and says so once
per run (:class:`ProviderFailing`), then once more when a call succeeds again
(:class:`ProviderRecovered`). Calls that say nothing about the provider's health (a
request it refused as invalid, a rejection by the proxy itself) neither count nor reset.
"""

from __future__ import annotations

import attrs

from ironclaw.contract.modelwire import FailureKind

from .events import ModelCall, Outcome, ProviderFailing, ProviderRecovered

__all__ = ["WATCHED_FAILURES", "ProviderHealth"]

WATCHED_FAILURES = frozenset({FailureKind.OVERLOADED, FailureKind.QUOTA, FailureKind.AUTH,
                              FailureKind.PERMISSION, FailureKind.RATE_LIMITED,
                              FailureKind.SERVER})
DEFAULT_THRESHOLD = 3


@attrs.define
class _Run:
    failure: str = ""
    count: int = 0
    reported: bool = False


class ProviderHealth:
    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self._threshold = max(1, threshold)
        self._runs: dict[str, _Run] = {}

    def observe(self, call: ModelCall) -> ProviderFailing | ProviderRecovered | None:
        run = self._runs.setdefault(call.provider, _Run())
        if call.failure in WATCHED_FAILURES:
            if call.failure != run.failure:
                run.failure, run.count, run.reported = call.failure, 0, False
            run.count += 1
            if run.count >= self._threshold and not run.reported:
                run.reported = True
                return ProviderFailing(call.provider, call.failure, run.count)
            return None
        if call.outcome is Outcome.OK and 200 <= call.status < 300:
            recovered = run.reported
            failed = run.count
            self._runs[call.provider] = _Run()
            if recovered:
                return ProviderRecovered(call.provider, failed)
        return None
