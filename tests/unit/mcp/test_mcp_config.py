"""The operator's ``[mcp]`` table: a catalogue that parses says exactly what was written,
and each mistake is refused with where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ironclaw.host.config.file import ConfigFileError, load_config_file
from ironclaw.host.mcp import McpConfig

GOOD = """
[mcp.limits]
call_timeout_s = 12
max_calls_per_session = 50

[[mcp.servers]]
name = "time"
command = "mcp-server-time"
args = ["--local-timezone", "UTC"]
tools = ["get_current_time"]

[[mcp.servers]]
name = "fetch"
command = "mcp-server-fetch"
egress = ["example.com"]
session_workspace = true
[mcp.servers.image]
python = ["mcp-server-fetch==2026.10.19"]
"""


def test_a_catalogue_parses_into_entries_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "ironclaw.toml"
    path.write_text(GOOD)
    config: McpConfig = load_config_file(path)["mcp"]
    time, fetch = config.servers
    assert (time.name, time.server.command, time.server.args, time.tools) == (
        "time", "mcp-server-time", ("--local-timezone", "UTC"),
        frozenset({"get_current_time"}))
    assert (time.server.egress, time.server.session_workspace) == ((), False)
    assert (fetch.tools, fetch.server.egress, fetch.server.session_workspace) == (
        None, ("example.com",), True)
    assert fetch.server.image == {"python": ["mcp-server-fetch==2026.10.19"]}
    assert (config.limits.call_timeout_s, config.limits.max_calls_per_session) == (12, 50)
    assert config.gateway_catalog() == {"time": frozenset({"get_current_time"}),
                                        "fetch": None}


def server(**fields: Any) -> dict[str, Any]:
    return {"servers": [{"name": "time", "command": "mcp-server-time", **fields}]}


@pytest.mark.parametrize(("table", "error"), [
    ({"server": []}, "unknown key(s) server"),
    ({"servers": {"name": "x"}}, "list of at most"),
    (server(name="two__parts"), "contains '__'"),
    (server(name="Time"), "not a lowercase identifier"),
    (server(command=""), "command is required"),
    (server(args="--flag"), "args must be a list"),
    (server(egress=["10.0.0.1"]), "never an IP address"),
    (server(egress=["localhost"]), "hostname with at least two labels"),
    (server(tools=["send_message"]), "name of a built-in tool"),
    (server(session_workspace="yes"), "true or false"),
    (server(env={"TOKEN": "x"}), "unknown key(s) env"),
    ({"servers": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]},
     "named twice"),
    ({"limits": {"call_timeout_s": "slow"}}, "call_timeout_s must be"),
    ({"limits": {"max_calls_per_session": 0}}, "max_calls_per_session"),
    ({"limits": {"max_calls_per_session": 1.5}}, "must be a"),
])
def test_a_mistake_is_refused_with_where_it_is(table: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as refused:
        McpConfig.from_table(table)
    assert error in str(refused.value)


def test_the_file_loader_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ironclaw.toml"
    path.write_text('[[mcp.servers]]\nname = "x__y"\ncommand = "c"\n')
    with pytest.raises(ConfigFileError, match=r"ironclaw\.toml: mcp\.servers\[0\]"):
        load_config_file(path)
