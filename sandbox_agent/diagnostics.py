"""Describing a failure without repeating its message.

Exception messages routinely carry data (a path, a key, a line of the user's text),
and the agent's stderr lands in host logs, which carry ids and counts, never content.
So a bug is reported by its type and where it was raised, which is enough to find it.
"""

from __future__ import annotations

import traceback
from pathlib import Path


def describe_failure(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    innermost = frames[-1]
    return f"{type(exc).__name__} at {Path(innermost.filename).name}:{innermost.lineno}"
