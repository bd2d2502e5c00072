"""IronClaw: a security-first, self-hosted AI-agent platform.

This module holds the version only and imports nothing: the sandbox side imports
``ironclaw.contract``, and must not drag the control plane in with it.
"""

__version__ = "0.1.0"
