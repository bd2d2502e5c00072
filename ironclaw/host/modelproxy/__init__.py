"""The host's model proxy: per-session unix sockets, host-held credentials, redaction.

See :mod:`ironclaw.host.modelproxy.proxy` for the request pipeline and
:mod:`ironclaw.host.modelproxy.mock` for the deterministic mock model.
"""

from ironclaw.host.modelproxy.credentials import Credentials as Credentials
from ironclaw.host.modelproxy.credentials import Secret as Secret
from ironclaw.host.modelproxy.events import ModelCall as ModelCall
from ironclaw.host.modelproxy.events import Outcome as Outcome
from ironclaw.host.modelproxy.events import ProviderFailing as ProviderFailing
from ironclaw.host.modelproxy.events import ProviderRecovered as ProviderRecovered
from ironclaw.host.modelproxy.events import SessionSocketFailed as SessionSocketFailed
from ironclaw.host.modelproxy.mailbox import ProxyLimits as ProxyLimits
from ironclaw.host.modelproxy.mailbox import ProxyMsg as ProxyMsg
from ironclaw.host.modelproxy.mailbox import ServeProxySession as ServeProxySession
from ironclaw.host.modelproxy.mailbox import StopProxySession as StopProxySession
from ironclaw.host.modelproxy.providers import ProviderEndpoint as ProviderEndpoint
from ironclaw.host.modelproxy.providers import ProviderKind as ProviderKind
from ironclaw.host.modelproxy.providers import SessionRoute as SessionRoute
from ironclaw.host.modelproxy.proxy import ModelProxy as ModelProxy
from ironclaw.host.modelproxy.redact import Redactor as Redactor
from ironclaw.host.sockets.serving import SessionConflict as SessionConflict
from ironclaw.host.sockets.unix import UnsafeSocketPath as UnsafeSocketPath
