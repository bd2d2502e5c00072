"""Each provider's wire quirks (one table, the same in docs/operations.md), the local
model's output cap, and --dev's --provider flag."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ironclaw.cli.controlplane import main
from ironclaw.contract.agent_config import (
    AgentConfig,
    MaxTokensField,
    ModelApi,
    ToolCallContent,
)
from ironclaw.host.modelproxy import Credentials, ProviderKind
from ironclaw.host.registry import AgentGroup
from ironclaw.host.sessions.model_provider import PROVIDER_QUIRKS, agent_provider

DOCS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
LOCAL = Credentials(local_url="http://127.0.0.1:8080")


def group(provider: str) -> AgentGroup:
    return AgentGroup(id="g", name="G", folder="g", provider=provider, model="m")


def test_the_documented_quirks_are_the_configured_ones() -> None:
    text = DOCS.read_text()
    section = text[text.index("### Provider wire quirks"):]
    rows = re.findall(r"^\| (\w+) \| `(\w+)` \| `(null|\"\")` \|$", section, re.MULTILINE)
    documented = {kind: (field, "empty" if content == '""' else "null")
                  for kind, field, content in rows}
    configured = {kind.value: (q.max_tokens_field.value, q.tool_call_content.value)
                  for kind, q in PROVIDER_QUIRKS.items()}
    assert documented == configured
    assert set(PROVIDER_QUIRKS) == set(ProviderKind)


def test_each_provider_gets_its_quirks_in_the_agent_config() -> None:
    openai = agent_provider(group("openai"), LOCAL)
    assert openai.quirks.max_tokens_field is MaxTokensField.MAX_COMPLETION_TOKENS
    local = agent_provider(group("local"), LOCAL)
    assert (local.api, local.host) == (ModelApi.OPENAI_CHAT, "127.0.0.1")
    assert local.quirks.tool_call_content is ToolCallContent.EMPTY
    assert local.max_tokens == 4096
    capped = agent_provider(group("local"), Credentials.from_env({
        "IRONCLAW_LOCAL_MODEL_URL": "http://127.0.0.1:8080",
        "IRONCLAW_LOCAL_MODEL_MAX_TOKENS": "384"}))
    assert capped.max_tokens == 384 and capped.quirks == local.quirks


def test_quirks_travel_through_the_agent_config_file() -> None:
    config = AgentConfig(session_id="ses_0123456789abcdef", agent_group_id="g",
                         provider=agent_provider(group("local"), LOCAL))
    assert AgentConfig.parse(config.render()) == config
    legacy = json.loads(config.render())
    del legacy["provider"]["quirks"]  # an older file: the defaults apply
    parsed = AgentConfig.parse(json.dumps(legacy))
    assert parsed.provider.quirks == PROVIDER_QUIRKS[ProviderKind.MOCK]


def test_a_bad_local_max_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match="MAX_TOKENS"):
        Credentials.from_env({"IRONCLAW_LOCAL_MODEL_MAX_TOKENS": "lots"})


def test_provider_flag_is_for_dev_only(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--provider", "local", "--no-api", "--state-dir", str(tmp_path)]) == 2
    assert "--dev" in capsys.readouterr().err
