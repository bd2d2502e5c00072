"""An agent group's provider, in the two forms it takes: what the agent is told to
speak (wire shape, upstream host, model) and what the model proxy enforces (allowed
hosts, real upstream, credential). Both come from here so they cannot disagree."""

from __future__ import annotations

from types import MappingProxyType
from urllib.parse import urlsplit

from ironclaw.contract.agent_config import (
    MOCK_MODEL_HOST,
    MaxTokensField,
    ModelApi,
    ProviderConfig,
    ToolCallContent,
    WireQuirks,
)
from ironclaw.host.modelproxy import Credentials, ProviderEndpoint, ProviderKind
from ironclaw.host.registry import AgentGroup


class UnknownProvider(ValueError):
    pass


# How each provider's OpenAI-shaped server differs (docs/operations.md lists them, and a
# test keeps that list equal to this one). Anthropic and the mock take the defaults.
PROVIDER_QUIRKS = MappingProxyType({
    ProviderKind.ANTHROPIC: WireQuirks(),
    ProviderKind.OPENAI: WireQuirks(MaxTokensField.MAX_COMPLETION_TOKENS,
                                    ToolCallContent.NULL),
    ProviderKind.OPENROUTER: WireQuirks(MaxTokensField.MAX_TOKENS, ToolCallContent.NULL),
    # llama.cpp, Ollama, vLLM: the old token name, and "" rather than null (llama.cpp's
    # server answers null with a 500).
    ProviderKind.LOCAL: WireQuirks(MaxTokensField.MAX_TOKENS, ToolCallContent.EMPTY),
    ProviderKind.MOCK: WireQuirks(),
})


def agent_provider(group: AgentGroup, credentials: Credentials) -> ProviderConfig:
    kind = _kind(group.provider, credentials)
    quirks = PROVIDER_QUIRKS[kind]
    if kind is ProviderKind.MOCK:
        return ProviderConfig(ModelApi.ANTHROPIC_MESSAGES, MOCK_MODEL_HOST, group.model,
                              quirks=quirks)
    if kind is ProviderKind.ANTHROPIC:
        return ProviderConfig(ModelApi.ANTHROPIC_MESSAGES, "api.anthropic.com", group.model,
                              quirks=quirks)
    if kind is ProviderKind.OPENAI:
        return ProviderConfig(ModelApi.OPENAI_CHAT, "api.openai.com", group.model,
                              quirks=quirks)
    if kind is ProviderKind.OPENROUTER:
        return ProviderConfig(ModelApi.OPENAI_CHAT, "openrouter.ai", group.model,
                              quirks=quirks)
    host = urlsplit(credentials.local_url or "").hostname
    if not host:
        raise UnknownProvider("provider 'local' needs IRONCLAW_LOCAL_MODEL_URL")
    if credentials.local_max_tokens is not None:
        return ProviderConfig(ModelApi.OPENAI_CHAT, host, group.model,
                              credentials.local_max_tokens, quirks)
    return ProviderConfig(ModelApi.OPENAI_CHAT, host, group.model, quirks=quirks)


def proxy_endpoint(group: AgentGroup, credentials: Credentials) -> ProviderEndpoint:
    return ProviderEndpoint.from_credentials(_kind(group.provider, credentials), credentials)


def _kind(provider: str, credentials: Credentials) -> ProviderKind:
    try:
        kind = ProviderKind(provider)
    except ValueError:
        raise UnknownProvider(f"unknown provider {provider!r}") from None
    if kind is ProviderKind.MOCK and not credentials.mock_model:
        raise UnknownProvider("provider 'mock' is off in production mode (set mock_model "
                              "= true in the config file to serve it)")
    return kind
