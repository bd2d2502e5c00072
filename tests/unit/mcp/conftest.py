from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mcp import scratch_dir


@pytest.fixture
def base() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path
