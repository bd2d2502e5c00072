"""host.db: the control plane's own durable state, written only by the host."""

from .actor import HostStore as HostStore
from .actor import open_host_store as open_host_store
from .database import StoreError as StoreError
