"""The egress broker: opt-in, per-session unix sockets, deny-by-default.

A session gets ``egress.sock`` only when its agent group's ``egress_hosts`` grant
(grown only by approved ``egress`` changes) names something. See
:mod:`ironclaw.host.egress.broker` for the request pipeline, :mod:`.policy` for what
may leave, :mod:`.upstream` for the address-pinned client, and ``docs/egress.md`` for
the wire protocol.
"""

from ironclaw.host.egress.broker import EgressBroker as EgressBroker
from ironclaw.host.egress.broker import EgressGrants as EgressGrants
from ironclaw.host.egress.config import EgressConfig as EgressConfig
from ironclaw.host.egress.config import EgressLimits as EgressLimits
from ironclaw.host.egress.events import EgressRequest as EgressRequest
from ironclaw.host.egress.events import EgressSessionFailed as EgressSessionFailed
from ironclaw.host.egress.events import Outcome as Outcome
from ironclaw.host.egress.mailbox import EgressRoute as EgressRoute
from ironclaw.host.egress.mailbox import ServeEgress as ServeEgress
from ironclaw.host.egress.mailbox import StopEgress as StopEgress
from ironclaw.host.egress.policy import Allowlist as Allowlist
from ironclaw.host.egress.upstream import Resolver as Resolver
