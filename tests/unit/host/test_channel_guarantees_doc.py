"""docs/channels.md keeps its lists equal to the code: a delivery guarantee, a page, a
support column and a line of what it needs for every channel there is. The table's
channels are exactly the adapter types plus the local channel, each with a guarantee."""

from __future__ import annotations

import re
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


# -- the support table and the platform pages ------------------------------------------

ROOT = DOC.parents[1]


def table(section: str, heading: str) -> list[list[str]]:
    """The rows (header first, no separator) of the first table after ``heading``."""
    text = DOC.read_text().split(heading, 1)[1]
    rows, started = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            started = True
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if set("".join(cells)) - set("-: "):
                rows.append(cells)
        elif started:
            break
    assert rows, f"no table in {section}"
    return rows


def test_the_platform_list_names_every_channel_and_its_page() -> None:
    rows = table("the platform list", "# Channels\n")
    assert {row[0].lower() for row in rows[1:]} == {"local", *ADAPTER_TYPES}
    for row in rows[1:]:
        for page in re.findall(r"\]\(([^)#]+)", row[1]):
            assert (DOC.parent / page).is_file(), page
    for kind in ADAPTER_TYPES:
        assert (DOC.parent / "channels" / f"{kind}.md").is_file(), kind


def test_the_support_table_has_a_column_per_channel_and_tests_that_exist() -> None:
    rows = table("support by platform", "## Support by platform")
    assert [cell.lower() for cell in rows[0][1:]] == list(ADAPTER_TYPES)
    assert all(len(row) == len(rows[0]) for row in rows)
    (tested,) = [row for row in rows if row[0] == "Tested against"]
    for cell in tested[1:]:
        paths = re.findall(r"`(tests/[^`]+)`", cell)
        assert paths and all((ROOT / path).is_file() for path in paths), cell
    assert (ROOT / "tests" / "channels" / "test_threads.py").is_file()


def test_what_each_platform_needs_links_to_a_section_that_exists() -> None:
    rows = table("what each platform needs", "### What each platform needs")
    assert [row[0].lower() for row in rows[1:]] == list(ADAPTER_TYPES)
    for row in rows[1:]:
        ((page, anchor),) = re.findall(r"\]\(([^)#]+)#([^)]+)\)", row[2])
        headings = re.findall(r"^#+ (.+)$", (DOC.parent / page).read_text(), re.M)
        slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
        assert anchor in slugs, (page, anchor)
