"""The warm pool: sandboxes booted ahead of demand, each claimed by one session.

A warm sandbox is an ordinary hardened launch (``OciIsolator.run``, the same spec and
validator) of a *slot*: a session-shaped directory of its own, ``sessions/<slot id>/``,
with an empty inbound, an outbound on its agent group's disk volume, a socket directory,
an empty key file and a placeholder config, and the group's workspace. Its agent runs
with ``--await-claim``: it has paid for the runtime's boot and its own imports, then
blocks on ``claim.sock`` before it reads a config or a key. So until a claim it holds no
session data and no key.

A claim (the first launch of a ``SessionActor``) makes the slot's directories the
session's (``isolation.adoption``: the session's files move in, the slot's directories
take the session's paths), writes the session's key and config into the files the
sandbox was bound to, hands ownership over as a launch does, and says ``go``. From then
on it is that session's sandbox, stopped like any other, and never returns to the pool:
a slot serves one claim, then its directory and key file are removed.

Every warm sandbox is a container of this state directory's runtime root, so the
start-up reconcile kills it with the rest; the markers in ``<state>/pool/`` name the
slots a killed plane left, and :meth:`WarmPool.clear_leftovers` removes their
directories, volume binds and key files before the orphan reaper or any session
looks. The pool per agent group is the hook for
per-group binds: a slot is launched with its group's workspace (and whatever else a
group's launch binds) at create time.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
from pathlib import Path

import attrs
import trio

from ironclaw.contract.agent_config import AgentConfig, ProviderConfig
from ironclaw.contract.layout import CLAIM_SOCKET, SessionLayout
from ironclaw.contract.queue.files import fence_path_for
from ironclaw.host.isolation import LaunchSpec, SandboxExited
from ironclaw.host.isolation.adoption import fence_lock, swap_in
from ironclaw.host.isolation.oci import OciIsolator
from ironclaw.host.isolation.pool import PoolSettings, PoolSizer, mem_available_bytes
from ironclaw.host.isolation.volumes import NotAdoptable
from ironclaw.host.registry import NotFound, Registry
from ironclaw.host.sockets.unix import bind_unix_socket, unlink_if_ours

logger = logging.getLogger(__name__)

POOL_DIR = "pool"
AWAIT_CLAIM = "--await-claim"
GO = b"go\n"
MAX_FAILURE_BACKOFF_S = 60.0


@attrs.define(eq=False)
class WarmSlot:
    slot_id: str
    group_id: str
    spec: LaunchSpec
    ready: trio.Event = attrs.Factory(trio.Event)
    done: trio.Event = attrs.Factory(trio.Event)
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    pid: int | None = None
    claimed: bool = False
    adopted: trio.Event = attrs.Factory(trio.Event)  # the claim is done moving files
    exited: SandboxExited | None = None
    agent: trio.SocketStream | None = None  # the agent's claim.sock connection, once ready

    async def discard(self) -> None:
        self.scope.cancel()
        with trio.CancelScope(shield=True):
            await self.done.wait()


class Claim:
    """A warm sandbox taken by one session: adopt its directories, then start it."""

    def __init__(self, pool: WarmPool, slot: WarmSlot) -> None:
        self._pool, self.slot = pool, slot

    async def adopt(self, spec: LaunchSpec) -> None:
        """Before anything watches the session's directories or serves a socket there."""
        try:
            await trio.to_thread.run_sync(self._pool.adopt_dirs, self.slot, spec)
        except NotAdoptable:
            self.slot.claimed = False  # nothing moved: cleaned up as a waiting slot
            raise
        finally:
            self.slot.adopted.set()

    async def run(self, spec: LaunchSpec, *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """As ``Isolator.run``: the session's config and key go in, ``go`` goes out."""
        slot = self.slot
        try:
            await self._pool.isolator.hand_over(
                spec, config_file=slot.spec.run_dir / "agent.json",
                key_file=slot.spec.key_file)
            agent = slot.agent
            if agent is None or slot.done.is_set() or slot.pid is None:
                raise SandboxExited(-1, b"the warm sandbox ended before its claim")
            async with agent:
                await agent.send_all(GO)
            task_status.started(slot.pid)
            await slot.done.wait()
            if slot.exited is not None:
                raise SandboxExited(slot.exited.returncode, slot.exited.stderr_tail)
            raise SandboxExited(0, b"")
        finally:
            if not slot.done.is_set():
                await slot.discard()


class WarmPool:
    """The pool's actor: sizes the warm slots per group, serves each, hands them out."""

    def __init__(self, isolator: OciIsolator, registry: Registry, settings: PoolSettings,
                 *, state_dir: Path, key_dir: Path) -> None:
        self.isolator = isolator
        self.settings = settings
        self._registry = registry
        self._state = state_dir
        self._key_dir = key_dir
        self._markers = state_dir / POOL_DIR
        self._sizer = PoolSizer(settings)
        self._slots: list[WarmSlot] = []  # unclaimed: starting or ready
        self._kick = trio.Event()
        self._warmed = trio.Event()  # set, and replaced, whenever a slot turns ready
        self._failures = 0
        self._quiet_until = 0.0
        self.claims = self.misses = 0

    def warm(self, group_id: str) -> int:
        return sum(1 for s in self._slots if s.group_id == group_id and s.ready.is_set())

    async def wait_warm(self, group_id: str, count: int = 1) -> None:
        """Until ``count`` warm sandboxes of the group wait (tests, benchmarks)."""
        while self.warm(group_id) < count:
            await self._warmed.wait()

    def take(self, group_id: str) -> Claim | None:
        """A ready warm sandbox of the group, now the caller's; None if none waits.
        Either way the demand is recorded, so the pool grows toward it."""
        self._sizer.record_claim(group_id, trio.current_time())
        self._kick.set()
        for slot in self._slots:
            if slot.group_id == group_id and slot.ready.is_set() and not slot.done.is_set():
                self._slots.remove(slot)
                slot.claimed = True
                self.claims += 1
                return Claim(self, slot)
        self.misses += 1
        return None

    async def clear_leftovers(self) -> None:
        """Before :meth:`run`, and before anything looks at session directories: remove
        the slots a killed control plane left (their sandboxes are gone already: the
        start-up reconcile ran first)."""
        await trio.to_thread.run_sync(self._clear_leftovers)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await self._resize(nursery)
                self._kick = trio.Event()
                with trio.move_on_after(self.settings.tick_s):
                    await self._kick.wait()

    async def _resize(self, nursery: trio.Nursery) -> None:
        warm: dict[str, int] = {}
        for slot in self._slots:
            warm[slot.group_id] = warm.get(slot.group_id, 0) + 1
        memory = await trio.to_thread.run_sync(mem_available_bytes)
        targets = self._sizer.targets(trio.current_time(), memory, warm)
        for group, want in targets.items():
            have = [s for s in self._slots if s.group_id == group]
            for slot in have[want:]:
                slot.scope.cancel()
            if len(have) < want and trio.current_time() >= self._quiet_until:
                try:
                    folder = (await self._registry.get_agent_group(group)).folder
                except NotFound:
                    continue
                for _ in range(want - len(have)):
                    self._slots.append(self._new_slot(group, folder))
                    nursery.start_soon(self._serve_slot, self._slots[-1])

    def _new_slot(self, group_id: str, folder: str) -> WarmSlot:
        # Everything a launch binds is fixed when the container is created: a group's
        # binds (its workspace, and any it is granted) belong in this spec.
        slot_id = "ses_" + secrets.token_hex(32)
        layout = SessionLayout.under(self._state, slot_id)
        config = AgentConfig(session_id=slot_id, agent_group_id=group_id,
                             provider=ProviderConfig(api="openai-chat", host="unclaimed.invalid",
                                                     model="unclaimed"))
        spec = LaunchSpec(session_id=slot_id, agent_group_id=group_id,
                          queues=layout.queues, key_file=self._key_dir / slot_id / "key",
                          socket_dir=layout.socket_dir,
                          workspace=self._state / "workspaces" / folder,
                          run_dir=layout.root / "run", config=config)
        return WarmSlot(slot_id, group_id, spec)

    async def _serve_slot(self, slot: WarmSlot) -> None:
        try:
            with slot.scope:
                await trio.to_thread.run_sync(self._make_dirs, slot)
                await self.isolator.prepare_host(slot.spec)
                await self._boot(slot)
        except Exception:
            logger.exception("warm sandbox %s failed", slot.slot_id)
        finally:
            slot.done.set()
            if slot in self._slots:
                self._slots.remove(slot)
            if not slot.ready.is_set():
                self._failures += 1
                self._quiet_until = trio.current_time() + min(
                    MAX_FAILURE_BACKOFF_S, 2.0 ** self._failures)
            else:
                self._failures = 0
            with trio.CancelScope(shield=True):
                if slot.claimed:
                    await slot.adopted.wait()
                await trio.to_thread.run_sync(self._remove_slot, slot.slot_id, slot.claimed)
            self._kick.set()

    async def _boot(self, slot: WarmSlot) -> None:
        path = slot.spec.socket_dir / CLAIM_SOCKET
        sock, identity = await bind_unix_socket(path)
        listener = trio.SocketListener(sock)
        sock.listen(1)

        async def await_agent() -> None:
            async with listener:
                slot.agent = await listener.accept()
            unlink_if_ours(path, identity)  # one connection, ever; gone before adoption
            slot.ready.set()
            self._warmed.set()
            self._warmed = trio.Event()

        async def launched(*, task_status: trio.TaskStatus[int]) -> None:
            await self.isolator.run(slot.spec, task_status=task_status,
                                    extra_args=(AWAIT_CLAIM,))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(await_agent)
                slot.pid = await nursery.start(launched)
        except* SandboxExited as group:
            exited = group.exceptions[0]
            assert isinstance(exited, SandboxExited)
            slot.exited = exited
        finally:
            unlink_if_ours(path, identity)
            if slot.agent is not None and not slot.claimed:
                with contextlib.suppress(trio.ClosedResourceError):
                    await slot.agent.aclose()

    # -- blocking parts, on worker threads -----------------------------------------------

    def adopt_dirs(self, slot: WarmSlot, spec: LaunchSpec) -> None:
        source = slot.spec
        volumes = self.isolator.volumes
        if volumes is not None:
            volumes.check_adoptable(spec.workspace.name, spec.queues.outbound_dir.parent)
        # Then: a plane killed from here on leaves a marker that says the slot's
        # directories may hold the session's files, which a clean-up must never remove.
        (self._markers / slot.slot_id).write_text(f"{slot.group_id}\nclaimed")
        with fence_lock(fence_path_for(spec.queues.inbound_db)):
            swap_in(source.queues.inbound_dir, spec.queues.inbound_dir)
        if volumes is None or not volumes.adopt_outbound(
                spec.workspace.name, source.queues.outbound_dir.parent,
                spec.queues.outbound_dir.parent):
            swap_in(source.queues.outbound_dir, spec.queues.outbound_dir)
        swap_in(source.socket_dir, spec.socket_dir)

    def _make_dirs(self, slot: WarmSlot) -> None:
        self._markers.mkdir(mode=0o700, exist_ok=True)
        (self._markers / slot.slot_id).write_text(slot.group_id)
        layout = SessionLayout.under(self._state, slot.slot_id)
        layout.create()
        slot.spec.run_dir.mkdir(mode=0o700, exist_ok=True)
        slot.spec.workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
        slot.spec.key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        slot.spec.key_file.write_bytes(b"")
        slot.spec.key_file.chmod(0o400)

    def _remove_slot(self, slot_id: str, claimed: bool) -> None:
        """What a slot had. Claimed, only its config and key file: its directories are
        the session's now, and one a failed adoption left behind may hold the
        session's files, so it stays (and is logged)."""
        root = SessionLayout.under(self._state, slot_id).root
        volumes = self.isolator.volumes
        if claimed:
            shutil.rmtree(root / "run", ignore_errors=True)
            for emptied in ("outbound", "inbound", "sock"):  # a volume's bare mount point
                with contextlib.suppress(OSError):
                    (root / emptied).rmdir()
            with contextlib.suppress(FileNotFoundError):
                try:
                    root.rmdir()
                except OSError:
                    logger.warning("claimed warm slot %s kept: %s is not empty", slot_id,
                                   root)
        else:
            if volumes is not None and root.is_dir():
                volumes.release_session(root, None)
            shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(self._key_dir / slot_id, ignore_errors=True)
        (self._markers / slot_id).unlink(missing_ok=True)

    def _clear_leftovers(self) -> None:
        if not self._markers.is_dir():
            return
        for marker in self._markers.iterdir():
            try:
                claimed = marker.read_text().endswith("claimed")
                self._remove_slot(marker.name, claimed)
            except (OSError, ValueError) as exc:
                logger.warning("cannot remove leftover warm slot %s: %s", marker.name, exc)
