"""Reading what the agent is told at start: its config file and its key file.

Both are files the host binds read-only. Nothing is taken from the environment or
the command line except the config file's path: argv shows in process listings and
the environment leaks into children and crash reports, so no secret travels there.
Every failure becomes one ``StartupError`` whose message is fit for a single stderr
line and never contains key material.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from ironclaw.contract.agent_config import MAX_CONFIG_BYTES, AgentConfig, InvalidAgentConfig
from ironclaw.contract.cipher import InvalidKey, SessionKeys

MAX_KEY_FILE_BYTES = 4096
CLAIM_WORD = b"go\n"
_UPSTREAM_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?")


class StartupError(Exception):
    pass


class NeverClaimed(Exception):
    """The host closed the claim socket without claiming this warm sandbox."""


def prewarm(scratch_dir: Path) -> None:
    """A warm sandbox's agent, before it waits: take every first-use cost that needs no
    session (SQLCipher's crypto set-up and a schema creation on a throwaway file in the
    sandbox's own tmpfs, an HTTP transport, a Trio run), so a claim pays only for its
    session's files."""
    import httpx
    import trio

    from ironclaw.contract.cipher import SessionKeys
    from ironclaw.contract.queue import OutboundWriter

    scratch = scratch_dir / "prewarm.db"
    try:
        OutboundWriter(scratch, SessionKeys.generate().outbound).close()
    finally:
        for leftover in scratch_dir.glob("prewarm.db*"):
            leftover.unlink(missing_ok=True)
    httpx.AsyncHTTPTransport(uds=str(scratch_dir / "none.sock"), retries=0)
    trio.run(trio.sleep, 0)


def await_claim(path: Path) -> None:
    """A warm sandbox's agent: block until the host claims it for a session. Until the
    host says ``go`` on ``claim.sock`` there is no config or key to read (the files are
    placeholders); afterwards they are the session's. Anything but the word, or the
    host hanging up first, ends the agent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise StartupError(f"cannot reach the claim socket {path}: "
                               f"{exc.strerror or exc}") from None
        word = b""
        while len(word) < len(CLAIM_WORD):
            chunk = sock.recv(len(CLAIM_WORD) - len(word))
            if not chunk:
                raise NeverClaimed()
            word += chunk
    if word != CLAIM_WORD:
        raise StartupError("the claim socket said something other than go")


def _read_capped(path: Path, cap: int, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(cap + 1)
    except OSError as exc:
        raise StartupError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise StartupError(f"{what} {path} is larger than {cap} bytes")
    return data


def load_config(path: Path) -> AgentConfig:
    data = _read_capped(path, MAX_CONFIG_BYTES, "config")
    try:
        config = AgentConfig.parse(data)
    except InvalidAgentConfig as exc:
        raise StartupError(f"{path}: {exc}") from None
    problem = config_problem(config)
    if problem:
        raise StartupError(f"{path}: bad agent config: {problem}")
    return config


def config_problem(config: AgentConfig) -> str | None:
    """What the contract's parser accepts but this agent cannot run with."""
    provider, limits = config.provider, config.limits
    if not _UPSTREAM_HOST.fullmatch(provider.host):
        return f"provider.host {provider.host!r:.80} is not a host name"
    if not provider.model or provider.max_tokens <= 0:
        return "provider.model must be set and provider.max_tokens positive"
    if limits.max_tool_iterations < 0 or limits.provider_retries < 0:
        return "limits must not be negative"
    if limits.history_max_messages < 1 or limits.history_max_bytes < 1:
        return "history limits must be positive"
    if limits.breaker_failures < 1 or limits.breaker_cooldown_s < 0:
        return "breaker_failures must be at least 1 and breaker_cooldown_s not negative"
    if not (config.heartbeat_interval_s > 0 and config.safety_poll_interval_s > 0):
        return "heartbeat and safety poll intervals must be positive"
    return None


def load_keys(path: Path) -> SessionKeys:
    data = _read_capped(path, MAX_KEY_FILE_BYTES, "key file")
    try:
        return SessionKeys.parse_file(data.decode("ascii"))
    except (InvalidKey, UnicodeDecodeError):
        # The parser's message names the problem, never the material; still, say only
        # that the file is malformed.
        raise StartupError(f"key file {path} is malformed") from None
