"""host.db: the control plane's own durable state, written only by the host."""

from ironclaw.host.store.host_store import HostStore as HostStore
from ironclaw.host.store.host_store import open_host_store as open_host_store

from .database import StoreError as StoreError
