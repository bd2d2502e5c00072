"""The README's quick tour grants the demo agent a tool it really lacks, and keeps the
rest of its tool set: the tour's request is the demo's tools plus one."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ironclaw.cli.ironctl.parser import build_parser
from ironclaw.host.config.devseed import DEMO_TOOLS
from sandbox_agent.tools import all_tools

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_tour_asks_for_exactly_one_tool_the_demo_lacks() -> None:
    tour = README.read_text().split("## Quick tour", 1)[1].split("\n## ", 1)[0]
    (request,) = re.findall(r"^tool:request_capability_change (\{.*\})$", tour, re.MULTILINE)
    body = json.loads(request)
    assert body["kind"] == "enabled_tools"
    asked = body["payload"]["tools"]
    (new,) = set(asked) - set(DEMO_TOOLS)
    assert set(asked) == {*DEMO_TOOLS, new}
    assert f"tool:{new} " in tour  # the tour shows it missing, then working
    compiled = {tool.name for tool in all_tools()}
    assert set(asked) <= compiled
    for name in ("list_dir", "read_persona", "send_message"):
        assert name in DEMO_TOOLS and f"`{name}`" in tour


def test_the_operations_doc_lists_the_demo_tools() -> None:
    ops = (README.parent / "docs" / "operations.md").read_text()
    paragraph = ops[ops.index("A `demo` agent group is seeded"):]
    paragraph = paragraph[:paragraph.index("; anything more")]
    listed = re.findall(r"`([a-z_]+)`", paragraph.split("small tool set", 1)[1])
    assert listed[:len(DEMO_TOOLS)] == list(DEMO_TOOLS)


def test_the_tour_connects_a_chat_with_one_command() -> None:
    tour = README.read_text().split("## Quick tour", 1)[1].split("\n## ", 1)[0]
    (connect,) = re.findall(r"^\.venv/bin/ironctl connect .*$", tour, re.MULTILINE)
    args = build_parser().parse_args(connect.split()[1:])
    assert (args.channel, args.agent) == ("webhook", "demo")
    assert "messaging-groups" not in tour and "--kind wiring" not in tour
