"""THE FROZEN SEAM: the only code both the control plane and the sandbox import.

It imports nothing from the rest of ``ironclaw``. A change to any wire-visible
shape here (tables, columns, enums, envelopes, cipher parameters, in-sandbox paths)
is an RFC entry in docs/contract.md first: drift here does not fail to compile, it
silently fails to decrypt or to route.
"""
