"""One chaos run against one runtime: chats through the webhook channel while the
control plane and its agents are killed, then the count.

The plan says how many faults of each kind; they are interleaved at random (seeded):
- **control plane, SIGKILL**, in three phases, in turn: *mid-turn* (just after the
  plane accepted an event), *mid-delivery* (the receiver kills the plane on a reply's
  arrival, before answering it, so the plane never learns it was delivered) and
  *during a sandbox start* (right after a restart, as soon as a new sandbox has
  processes). After each kill the plane is restarted at once on the same state;
- **agent, SIGKILL**: every process of one live sandbox (under runsc, the Sentry, gofer
  and stubs), just after an event was accepted. A message whose turn dies three times
  is failed with an apology by design (the agent cannot tell an outside kill from a
  message that crashes it), so no message is made to die that often: a session's
  sandbox is killed again only once every event sent before its second-to-last kill
  has been answered, which caps the kills any one turn sees at two;
- **agent, SIGSTOP**: one live sandbox is frozen until the sweeper stops it (its
  heartbeat goes stale), then whatever is left is resumed.

Meanwhile each chat's sender posts events back to back (each retried with its id until
the plane answers 200). When the faults are done, the senders stop, every accepted
event must be answered, the plane is stopped cleanly, and the outcome is counted:
events lost (no reply) and doubled (replies under two or more idempotency keys), stray
replies (no accepted event of that text), leftovers (containers, bundles, cgroups) and
inbound rows not pruned. Recovery time is measured from a restart to the first reply,
after it, to an event that was waiting when the plane died (the backlog).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from .chaos_faults import Sandbox, inbound_rows_left, leftovers, live_sandboxes, signal_sandbox
from .chaos_peer import Event, Receiver, Sender
from .chaos_plane import INBOUND_RETENTION_S, STUCK_AFTER_S

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("turn", "start", "delivery")
SETTLE_S = 2.0  # after the last reply: any duplicate would land in this window
STEP_TIMEOUT_S = 90.0  # for one fault's effect (a restart's first reply, say)
CLEAN_STOP_S = 60.0
AGENT_BACK_S = 10.0  # after an agent kill, for its session's next sandbox
# Below the agent's limit of interrupted attempts per message (sandbox_agent.processing).
KILLS_PER_TURN = 2


@attrs.frozen
class ChaosPlan:
    runtime: str
    plane_kills: int
    agent_kills: int
    stops: int
    chats: int = 3
    seed: int = 1
    drain_timeout_s: float = 180.0


@attrs.define
class ChaosOutcome:
    runtime: str
    plane_kills: Counter[str] = attrs.Factory(Counter)  # by phase
    agent_kills: int = 0
    stops: list[float | None] = attrs.Factory(list)  # seconds until the sweeper acted
    events: int = 0  # accepted
    lost: list[str] = attrs.Factory(list)
    doubled: list[str] = attrs.Factory(list)
    # Of the doubled: events whose first request got no answer (the plane died during
    # it) and whose retry was routed afresh ("duplicate": false), i.e. routed twice.
    doubled_rerouted: list[str] = attrs.Factory(list)
    stray: list[str] = attrs.Factory(list)  # echoes of no event that was sent
    apologies: int = 0  # replies that are not an event's answer (the agent's apology)
    apology_texts: list[str] = attrs.Factory(list)  # the first few, to tell which apology
    redelivered_same_key: int = 0  # retries the receiver absorbed by idempotency key
    leftovers: list[str] = attrs.Factory(list)
    inbound_left: dict[str, int] = attrs.Factory(dict)
    recovery_s: list[float] = attrs.Factory(list)
    stalls: list[str] = attrs.Factory(list)  # a fault whose effect never came
    elapsed_s: float = 0.0
    clean_stop: bool = True

    def problems(self) -> list[str]:
        """What breaks the guarantees; empty when the run is clean."""
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} accepted event(s) never answered: "
                         f"{self.lost[:10]}")
        if self.doubled:
            found.append(f"{len(self.doubled)} event(s) answered under more than one "
                         f"key: {self.doubled[:10]} ({len(self.doubled_rerouted)} of them "
                         "routed twice: a request the plane died during, then a retry "
                         "it routed afresh)")
        if self.stray:
            found.append(f"{len(self.stray)} stray repl(ies): {self.stray[:10]}")
        if self.apologies:
            found.append(f"{self.apologies} repl(ies) that answer no event (an apology "
                         "for an unreachable model, in place of an answer)")
        if self.leftovers:
            found.append(f"left behind: {self.leftovers[:10]}")
        if any(self.inbound_left.values()):
            found.append(f"inbound rows not pruned: {self.inbound_left}")
        if None in self.stops:
            found.append("the sweeper did not act on a stopped agent")
        if not self.clean_stop:
            found.append("the control plane did not stop cleanly on SIGTERM")
        return found

    def summary(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "plane_kills": dict(self.plane_kills),
                "plane_kills_total": sum(self.plane_kills.values()),
                "agent_kills": self.agent_kills, "stops": len(self.stops),
                "sweeper_acted_s": self.stops, "events": self.events,
                "lost": len(self.lost), "doubled": len(self.doubled),
                "doubled_rerouted": len(self.doubled_rerouted),
                "stray": len(self.stray), "apologies": self.apologies,
                "apology_texts": self.apology_texts,
                "redelivered_same_key": self.redelivered_same_key,
                "leftovers": self.leftovers, "inbound_left": sum(self.inbound_left.values()),
                "recovery_s": [round(s, 3) for s in self.recovery_s],
                "stalls": self.stalls, "clean_stop": self.clean_stop,
                "elapsed_s": round(self.elapsed_s, 1), "problems": self.problems()}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PlaneProcess:
    """The control plane child (``bench.chaos_plane``), started and killed at will."""

    def __init__(self, setup: Path, log: Path) -> None:
        self.setup = setup
        self.log = log
        self.process: trio.Process | None = None
        self.started_at = 0.0

    async def start(self) -> None:
        self.started_at = time.monotonic()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        with self.log.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "bench.chaos_plane", str(self.setup)],
                stdout=subprocess.PIPE, stderr=log, cwd=ROOT, env=env)
        assert self.process.stdout is not None
        seen = b""
        with trio.fail_after(STEP_TIMEOUT_S):
            while b"ready\n" not in seen:
                chunk = await self.process.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError(f"the control plane exited before it was ready; "
                                       f"see {self.log}")
                seen += chunk

    def kill_now(self) -> None:
        """SIGKILL, synchronously (the receiver calls it mid-request)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def kill(self) -> None:
        self.kill_now()
        await self.reap()

    async def reap(self) -> None:
        if self.process is not None:
            await self.process.wait()
            if self.process.stdout is not None:
                await self.process.stdout.aclose()
            self.process = None

    async def stop(self) -> bool:
        """SIGTERM and wait: True if it stopped cleanly within ``CLEAN_STOP_S``."""
        if self.process is None:
            return True
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(CLEAN_STOP_S):
            await self.reap()
            return True
        await self.kill()
        return False


class Chaos:
    def __init__(self, plan: ChaosPlan, root: Path, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.root = root
        self.state = root / "state"
        self.log = log
        self.rng = random.Random(plan.seed)
        self.outcome = ChaosOutcome(plan.runtime)
        secret, out_secret = secrets.token_hex(24), secrets.token_hex(24)
        self.receiver = Receiver(out_secret.encode(), secrets.token_hex(8))
        self.secret = secret
        self.out_secret = out_secret
        self.chats = [f"chaos-{i}" for i in range(plan.chats)]
        self.port = free_port()
        self.plane = PlaneProcess(root / "setup.json", root / "plane.log")
        self.sender: Sender | None = None
        self.stop_sending = trio.Event()
        self.agent_kills_at: dict[str, list[float]] = {}  # session -> monotonic times

    # -- the run -------------------------------------------------------------------------

    async def run(self, image_cache: Path | None) -> ChaosOutcome:
        started = time.monotonic()
        try:
            await self._run(image_cache)
        finally:
            with trio.CancelScope(shield=True):
                # A run that failed must not leave the plane running, nor its agents
                # (a killed plane's agents outlive it until the next one starts).
                await self.plane.kill()
                for box in await self._sandboxes():
                    signal_sandbox(box, signal.SIGKILL)
        await self._count()
        self.outcome.elapsed_s = time.monotonic() - started
        return self.outcome

    async def _run(self, image_cache: Path | None) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.receiver.serve)
            setup = {"state": str(self.state), "keys": str(self.root / "keys"),
                     "runtime": self.plan.runtime, "listen": f"127.0.0.1:{self.port}",
                     "url": self.receiver.url, "chats": self.chats,
                     "image_cache": str(image_cache) if image_cache else None,
                     "secret": self.secret, "outbound_secret": self.out_secret}
            self.plane.setup.touch(mode=0o600)
            self.plane.setup.write_text(json.dumps(setup))
            await self.plane.start()
            async with httpx.AsyncClient(timeout=10) as client:
                self.sender = Sender(f"http://127.0.0.1:{self.port}/hooks/default",
                                     self.secret.encode(), client)
                async with trio.open_nursery() as senders:
                    for chat in self.chats:
                        senders.start_soon(self._drive, chat)
                    await self._faults()
                    self.stop_sending.set()
                await self._drain()
            self.outcome.clean_stop = await self.plane.stop()
            nursery.cancel_scope.cancel()

    async def _drive(self, chat: str) -> None:
        assert self.sender is not None
        n = 0
        while not self.stop_sending.is_set():
            await self.sender.send(Event(chat, f"{chat}-{n}", f"{chat} {n}"))
            n += 1
            await trio.sleep(self.rng.uniform(0.05, 0.3))

    async def _faults(self) -> None:
        plan = self.plan
        kinds = ["plane"] * plan.plane_kills + ["agent"] * plan.agent_kills + \
            ["stop"] * plan.stops
        self.rng.shuffle(kinds)
        await self._until_replies(1)  # the system works before anything is broken
        plane_faults = 0
        for number, kind in enumerate(kinds):
            if kind == "plane":
                await self._kill_plane(PHASES[plane_faults % len(PHASES)])
                plane_faults += 1
            elif kind == "agent":
                await self._kill_agent()
            else:
                await self._stop_agent()
            if number % 10 == 9:
                self.log(f"{plan.runtime}: {number + 1}/{len(kinds)} faults, "
                         f"{len(self.receiver.replies)} replies")

    # -- faults --------------------------------------------------------------------------

    async def _kill_plane(self, phase: str) -> None:
        if phase == "turn":
            await self._next_acceptance()
            await trio.sleep(self.rng.uniform(0, 0.05))
            await self.plane.kill()
        elif phase == "delivery":
            fired = trio.Event()

            def kill_mid_delivery() -> None:
                self.plane.kill_now()
                fired.set()

            self.receiver.arm(kill_mid_delivery)
            with trio.move_on_after(STEP_TIMEOUT_S):
                await fired.wait()
            self.receiver.disarm()
            if not fired.is_set():
                self.outcome.stalls.append("no reply arrived to kill the plane on")
                return
            await self.plane.reap()
        else:
            # A sandbox start needs a fresh plane: kill it at a random moment, restart,
            # and kill it again as soon as a new sandbox has processes.
            await self.plane.kill()
            self.outcome.plane_kills["random"] += 1
            before = {pid for b in await self._sandboxes() for pid in b.pids}
            await self.plane.start()
            with trio.move_on_after(STEP_TIMEOUT_S):
                await self._until(lambda boxes: any(set(b.pids) - before for b in boxes))
                await trio.sleep(self.rng.uniform(0, 0.15))
                await self.plane.kill()
            if self.plane.process is not None:
                self.outcome.stalls.append("no sandbox started after a restart")
                await self.plane.kill()
                await self._restart()
                return
        self.outcome.plane_kills[phase] += 1
        await self._restart()

    async def _restart(self) -> None:
        waiting = self._unanswered_ids()
        await self.plane.start()
        restarted = self.plane.started_at
        with trio.move_on_after(STEP_TIMEOUT_S):
            while True:
                firsts = [r.first_at for r in self.receiver.replies.values()
                          if r.first_at > restarted and self._event_of(r.text) in waiting]
                if firsts:
                    self.outcome.recovery_s.append(min(firsts) - restarted)
                    return
                await self.receiver.arrived.park()
        self.outcome.stalls.append("no backlog reply after a restart")

    async def _kill_agent(self) -> None:
        box = await self._pick_sandbox(self._may_kill)
        if box is None:
            return
        await self._next_acceptance()
        await trio.sleep(self.rng.uniform(0, 0.05))
        fresh = next((b for b in await self._sandboxes() if b.session_id == box.session_id),
                     box)
        signal_sandbox(fresh, signal.SIGKILL)
        self.agent_kills_at.setdefault(box.session_id, []).append(time.monotonic())
        self.outcome.agent_kills += 1
        # On to the next fault once the session has a new sandbox (or needs none yet):
        # waiting for a reply after every kill would make the short form too slow.
        with trio.move_on_after(AGENT_BACK_S):
            await self._until(lambda boxes: not any(
                b.session_id == box.session_id and set(b.pids) & set(fresh.pids)
                for b in boxes))
            await self._until(lambda boxes: any(b.session_id == box.session_id
                                                for b in boxes))

    def _may_kill(self, box: Sandbox) -> bool:
        """Whether killing ``box`` now could not be the third death of one message's
        turn: its session's turns in flight at its second-to-last kill are answered."""
        kills = self.agent_kills_at.get(box.session_id, [])
        if len(kills) < KILLS_PER_TURN:
            return True
        assert self.sender is not None
        before = kills[-KILLS_PER_TURN]
        answered = self._answered_ids()
        return all(e.id in answered for e in self.sender.events.values()
                   if e.sent_at < before)

    async def _stop_agent(self) -> None:
        box = await self._pick_sandbox()
        if box is None:
            return
        stopped_at = time.monotonic()
        signal_sandbox(box, signal.SIGSTOP)
        acted: float | None = None
        with trio.move_on_after(STUCK_AFTER_S + STEP_TIMEOUT_S):
            while True:
                now = [b for b in await self._sandboxes() if b.session_id == box.session_id]
                if not now or not set(now[0].pids) & set(box.pids):
                    acted = time.monotonic() - stopped_at
                    break
                await trio.sleep(0.1)
        signal_sandbox(box, signal.SIGCONT)  # whatever is left must not stay frozen
        self.outcome.stops.append(acted)
        await self._until_replies(len(self.receiver.replies) + 1)

    # -- helpers -------------------------------------------------------------------------

    async def _sandboxes(self) -> list[Sandbox]:
        return await trio.to_thread.run_sync(live_sandboxes, self.state, self.plan.runtime)

    async def _until(self, done: Callable[[list[Sandbox]], bool]) -> list[Sandbox]:
        """Poll the sandboxes until ``done`` (processes under /proc signal no event)."""
        while not done(boxes := await self._sandboxes()):  # noqa: ASYNC110
            await trio.sleep(0.01)
        return boxes

    async def _pick_sandbox(self, allowed: Callable[[Sandbox], bool] = lambda _: True
                            ) -> Sandbox | None:
        with trio.move_on_after(STEP_TIMEOUT_S):
            while True:
                boxes = [b for b in await self._until(bool) if allowed(b)]
                if boxes:
                    return self.rng.choice(boxes)
                await trio.sleep(0.05)
        self.outcome.stalls.append("no live sandbox to signal")
        return None

    async def _next_acceptance(self) -> None:
        assert self.sender is not None
        with trio.move_on_after(STEP_TIMEOUT_S):
            await self.sender.accepted.park()

    async def _until_replies(self, count: int) -> None:
        with trio.move_on_after(STEP_TIMEOUT_S):
            while len(self.receiver.replies) < count:
                await self.receiver.arrived.park()
            return
        self.outcome.stalls.append(f"replies stopped at {len(self.receiver.replies)}")

    def _event_of(self, text: str) -> str | None:
        if not text.startswith("echo: "):
            return None
        chat, _, n = text[len("echo: "):].partition(" ")
        return f"{chat}-{n}"

    def _answered_ids(self) -> set[str | None]:
        return {self._event_of(r.text) for r in self.receiver.replies.values()}

    def _unanswered_ids(self) -> set[str]:
        assert self.sender is not None
        return set(self.sender.events) - self._answered_ids()

    async def _drain(self) -> None:
        with trio.move_on_after(self.plan.drain_timeout_s):
            while self._unanswered_ids():
                await self.receiver.arrived.park()
        # Let duplicates land, and finished inbound rows age past the retention.
        await trio.sleep(max(SETTLE_S, INBOUND_RETENTION_S * 2 + 1.0))

    async def _count(self) -> None:
        assert self.sender is not None
        out = self.outcome
        keys_of: dict[str, list[str]] = {}
        for reply in self.receiver.replies.values():
            event_id = self._event_of(reply.text)
            if event_id is None:
                out.apologies += 1
                if len(out.apology_texts) < 3:
                    out.apology_texts.append(reply.text[:160])
                continue
            if event_id not in self.sender.events:
                out.stray.append(reply.text)
                continue
            keys_of.setdefault(event_id, []).append(reply.key)
            out.redelivered_same_key += reply.attempts - 1
        accepted = [e for e in self.sender.events.values() if e.accepted_at is not None]
        out.events = len(accepted)
        out.lost = sorted(e.id for e in accepted if e.id not in keys_of)
        out.doubled = sorted(i for i, keys in keys_of.items() if len(keys) > 1)
        events = self.sender.events
        out.doubled_rerouted = [i for i in out.doubled
                                if events[i].lost_answers and events[i].routed_fresh]
        out.leftovers = await trio.to_thread.run_sync(leftovers, self.state)
        out.inbound_left = await trio.to_thread.run_sync(inbound_rows_left, self.state)


async def run_scenario(plan: ChaosPlan, root: Path, *, image_cache: Path | None = None,
                       log: Callable[[str], None] = print) -> ChaosOutcome:
    """Run ``plan`` in ``root`` (a fresh directory the sandboxes can reach)."""
    return await Chaos(plan, root, log).run(image_cache)
