"""docs/channels.md states a delivery guarantee for every channel there is: the table's
channels are exactly the adapter types plus the local channel, each with a guarantee."""

from __future__ import annotations

from pathlib import Path

from ironclaw.host.channels.adapters import ADAPTER_TYPES

DOC = Path(__file__).resolve().parents[3] / "docs" / "channels.md"
GUARANTEES = ("exactly once", "at least once")


def guarantee_rows() -> dict[str, str]:
    text = DOC.read_text()
    section = text.split("## Delivery guarantees per channel", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[0] not in ("Channel", "---"):
            rows[cells[0].lower()] = cells[1]
    return rows


def test_every_channel_has_a_stated_guarantee() -> None:
    rows = guarantee_rows()
    assert set(rows) == {"local", *ADAPTER_TYPES}
    for channel, guarantee in rows.items():
        assert guarantee.startswith(GUARANTEES), (channel, guarantee)
