"""The agent's task tree.

    serve_agent            signals -> cancel everything
    └── Agent.run          owns the queues and the model client
        ├── heartbeat      rewrites outbound/heartbeat every heartbeat_interval_s
        ├── doorbell       wake.sock bytes -> wake
        └── processing     wake or safety poll -> one pass over inbound; prune now and then

Processing is one task, so turns run one at a time in seq order and every queue write
happens in program order. A wake that arrives during a pass is remembered and starts
the next pass immediately; there is no fixed sleep between a doorbell byte and work.
"""

from __future__ import annotations

import logging
import math
import signal
from pathlib import Path

import attrs
import httpx
import trio

from ironclaw.contract.agent_config import AgentConfig
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.layout import HEARTBEAT_FILE, write_heartbeat
from ironclaw.contract.queue import QueueBusy, QueueError, QueueNotReady

from .doorbell import serve_doorbell
from .processing import CLAIM_AFTER_S, TurnProcessor
from .prompt import build_system_prompt
from .providers import (
    CircuitBreaker,
    HostUnreachable,
    RetryPolicy,
    make_provider,
    open_model_client,
)
from .queue_io import open_agent_queues
from .tools import build_registry
from .tools.mcp import McpTools

log = logging.getLogger(__name__)


class AgentFatal(Exception):
    """The agent cannot go on (wrong key, foreign schema, oversized queue): exit and
    let the host decide, rather than spin."""


def find_fatal(exc: BaseException) -> AgentFatal | None:
    """The AgentFatal inside ``exc``, which a nursery may have wrapped in groups."""
    if isinstance(exc, AgentFatal):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_fatal(inner)
            if found is not None:
                return found
    return None


@attrs.frozen
class AgentOptions:
    """Knobs that are not configuration: tests turn them, production keeps them."""

    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    prune_interval_s: float = 60.0
    outbound_retention_s: float = 300.0
    # How long a turn runs before its claim is committed (0: before it starts).
    claim_after_s: float = CLAIM_AFTER_S
    # Replaces the model socket (tests with a virtual clock need no real I/O).
    model_transport: httpx.AsyncBaseTransport | None = None


class Agent:
    def __init__(self, config: AgentConfig, keys: SessionKeys,
                 options: AgentOptions | None = None) -> None:
        self.config = config
        self._keys = keys
        self._options = options or AgentOptions()
        self._wake = trio.Event()
        self.passes = 0
        registry, unknown = build_registry(
            config.enabled_tools, egress_socket=config.egress_socket if config.egress else None)
        if unknown:
            log.warning("enabled_tools names no compiled-in tool: %s", ", ".join(unknown))
        self.registry = registry

    def wake(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        config, options = self.config, self._options
        policy = RetryPolicy(retries=config.limits.provider_retries,
                             base_delay_s=options.backoff_base_s,
                             max_delay_s=options.backoff_max_s)
        breaker = CircuitBreaker(failures_to_open=config.limits.breaker_failures,
                                 cooldown_s=config.limits.breaker_cooldown_s)
        try:
            async with (
                open_agent_queues(inbound_dir=config.inbound_dir,
                                  outbound_dir=config.outbound_dir, keys=self._keys,
                                  scratch_dir=config.scratch_dir) as queues,
                open_model_client(socket_path=config.model_socket,
                                  upstream_host=config.provider.host, policy=policy,
                                  breaker=breaker,
                                  transport=options.model_transport) as client,
            ):
                processor = TurnProcessor(
                    config=config, queues=queues,
                    provider=make_provider(config.provider, client),
                    registry=self.registry,
                    system_prompt=build_system_prompt(config.persona, self.registry.names()),
                    mcp=McpTools(config.mcp_socket) if config.mcp else None,
                    claim_after_s=options.claim_after_s)
                await processor.start()
                log.info("agent up: session %s, %d tools", config.session_id,
                         len(self.registry))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(serve_heartbeat, config.outbound_dir / HEARTBEAT_FILE,
                                       config.heartbeat_interval_s)
                    nursery.start_soon(serve_doorbell, config.wake_socket, self.wake)
                    nursery.start_soon(self._serve_processing, processor)
                    task_status.started()
        except QueueError as exc:
            # Opening the outbound file failed (a wrong key, most likely); errors from
            # inside the task tree arrive as AgentFatal in an exception group.
            raise AgentFatal(f"{type(exc).__name__}: {exc}") from exc

    async def _serve_processing(self, processor: TurnProcessor) -> None:
        last_prune = -math.inf
        while True:
            # A fresh event before the pass: a wake that lands during it is kept.
            self._wake = trio.Event()
            try:
                await processor.process_pending()
                if trio.current_time() - last_prune >= self._options.prune_interval_s:
                    last_prune = trio.current_time()
                    removed = await processor.prune(
                        retention_s=self._options.outbound_retention_s)
                    if removed:
                        log.info("pruned %d outbound rows and acks", removed)
            except QueueNotReady:
                log.debug("inbound not created yet")
            except QueueBusy:
                log.info("inbound busy; retrying at the next wake")
            except HostUnreachable:
                log.warning("the control plane is not serving this sandbox; the turn "
                            "stays unanswered until it does")
            except QueueError as exc:
                raise AgentFatal(f"{type(exc).__name__}: {exc}") from exc
            self.passes += 1
            with trio.move_on_after(self.config.safety_poll_interval_s):
                await self._wake.wait()


async def serve_heartbeat(path: Path, interval_s: float) -> None:
    """The host reads this file through its bind of the outbound directory to tell a
    live agent from a hung one; a failed write is reported once, then retried."""
    failing = False
    while True:
        try:
            await trio.to_thread.run_sync(write_heartbeat, path)
        except OSError as exc:
            if not failing:
                log.warning("cannot write the heartbeat: %s", exc.strerror)
            failing = True
        else:
            failing = False
        await trio.sleep(interval_s)


async def serve_agent(config: AgentConfig, keys: SessionKeys, *,
                      options: AgentOptions | None = None) -> None:
    """Run until SIGTERM or SIGINT. Shutdown cancels the tree: a turn in flight is
    abandoned before its commit (it runs again on the next start), a commit in flight
    completes, and nothing half-done is ever written."""
    agent = Agent(config, keys, options)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)
            async for signum in signals:
                log.info("%s received: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
