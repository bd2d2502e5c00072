"""Provider credentials, held by the host and never shown.

A :class:`Secret` hides its value from ``repr``, ``str``, ``format`` and pickling, so a
credential that ends up in a log line, an exception message or an event by accident shows
as ``Secret(***)``. The value comes out only through :meth:`Secret.reveal`, which the
proxy calls at the two places that need it: building the upstream auth header and
building the redactor.

:class:`Credentials` is built from the host's environment (or config) and nothing else;
the sandbox never sees it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import NoReturn

import attrs

__all__ = ["Credentials", "Secret"]

MAX_SECRET_CHARS = 1024

ENV_ANTHROPIC = "ANTHROPIC_API_KEY"
ENV_OPENAI = "OPENAI_API_KEY"
ENV_OPENROUTER = "OPENROUTER_API_KEY"
ENV_LOCAL_URL = "IRONCLAW_LOCAL_MODEL_URL"
ENV_LOCAL_KEY = "IRONCLAW_LOCAL_MODEL_API_KEY"
ENV_LOCAL_MAX_TOKENS = "IRONCLAW_LOCAL_MODEL_MAX_TOKENS"


class Secret:
    """A credential value. Printable ASCII without spaces: it goes into an HTTP header,
    so a CR, LF or NUL (header injection) is refused at construction."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret must be a non-empty string")
        if len(value) > MAX_SECRET_CHARS:
            raise ValueError(f"a secret is at most {MAX_SECRET_CHARS} characters")
        if not all(0x21 <= ord(ch) <= 0x7E for ch in value):
            raise ValueError("a secret must be printable ASCII without whitespace")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        value: str = object.__getattribute__(self, "_value")
        return value

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self.reveal() == other.reveal()

    def __hash__(self) -> int:
        return hash((Secret, self.reveal()))

    def __len__(self) -> int:
        return len(self.reveal())


def _secret(environ: Mapping[str, str], name: str) -> Secret | None:
    value = environ.get(name, "").strip()
    return Secret(value) if value else None


@attrs.frozen
class Credentials:
    """What the host holds for each provider. ``None`` means "not configured"."""

    anthropic: Secret | None = None
    openai: Secret | None = None
    openrouter: Secret | None = None
    local_url: str | None = None
    local_key: Secret | None = None
    # The output cap asked of the local model: a small model's context may not hold the
    # default cap on top of the prompt (a server then refuses every request).
    local_max_tokens: int | None = None
    # Whether the offline mock model is served. The daemon's production mode turns it
    # off unless its config file says ``mock_model = true``.
    mock_model: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if environ is None else environ
        local_url = env.get(ENV_LOCAL_URL, "").strip() or None
        max_tokens = env.get(ENV_LOCAL_MAX_TOKENS, "").strip()
        if max_tokens and (not max_tokens.isdigit() or int(max_tokens) < 1):
            raise ValueError(f"{ENV_LOCAL_MAX_TOKENS} must be a positive whole number")
        return cls(
            anthropic=_secret(env, ENV_ANTHROPIC),
            openai=_secret(env, ENV_OPENAI),
            openrouter=_secret(env, ENV_OPENROUTER),
            local_url=local_url,
            local_key=_secret(env, ENV_LOCAL_KEY),
            local_max_tokens=int(max_tokens) if max_tokens else None,
        )

    def usable_providers(self) -> frozenset[str]:
        """The providers an agent group may be moved to: those with what they need held
        here (a key, the local server's URL, or the mock model served)."""
        held = {"anthropic": self.anthropic is not None, "openai": self.openai is not None,
                "openrouter": self.openrouter is not None,
                "local": self.local_url is not None, "mock": self.mock_model}
        return frozenset(name for name, present in held.items() if present)

    def secrets(self) -> Iterator[Secret]:
        """Every credential held, for the redactor."""
        for value in (self.anthropic, self.openai, self.openrouter, self.local_key):
            if value is not None:
                yield value
