"""Model providers, reached only through the model-proxy socket."""

from __future__ import annotations

from ironclaw.contract.agent_config import ModelApi, ProviderConfig

from .anthropic import AnthropicMessages
from .client import ModelClient, open_model_client
from .openai import OpenAIChat
from .resilience import (
    BreakerOpen,
    CircuitBreaker,
    HostUnreachable,
    ProviderError,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
)
from .wire import Provider, ToolSpec

__all__ = [
    "AnthropicMessages",
    "BreakerOpen",
    "CircuitBreaker",
    "HostUnreachable",
    "ModelClient",
    "OpenAIChat",
    "Provider",
    "ProviderError",
    "ProviderProtocolError",
    "ProviderRejected",
    "ProviderUnavailable",
    "RetryPolicy",
    "ToolSpec",
    "make_provider",
    "open_model_client",
]


def make_provider(config: ProviderConfig, client: ModelClient) -> Provider:
    if config.api is ModelApi.ANTHROPIC_MESSAGES:
        return AnthropicMessages(client, config)
    return OpenAIChat(client, config)
