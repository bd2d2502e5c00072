from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def base() -> Iterator[Path]:
    # Short, so socket paths fit sun_path without the /proc/self/fd fallback.
    path = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
