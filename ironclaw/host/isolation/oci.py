"""The OCI isolator: one hardened bundle per launch, run by runsc, runc or crun.

A launch: verify the sandbox image against its pinned digest (a mismatch fails
closed), give the session's writable paths and key file to the sandbox's mapped uid,
write the agent config and the bundle (``spec.build_spec``, validated again after any
hook), remove a container of the same name left by a crashed control plane, then run
the runtime in the foreground under the child-process supervisor, behind a gate that
only a live control plane opens. The group's granted host mounts are staged first
(``hostmounts``: opened without following a symlink, bound by descriptor). Whatever
ends the launch, the container is killed and deleted, its bundle removed, its mount
stages released and its cgroups pruned, shielded from cancellation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from ironclaw.contract.agent_config import MountedDir
from ironclaw.runtime import ProcessFailed, open_child_process

from .base import LaunchSpec, SandboxExited
from .cgroups import remove_container_cgroups, remove_parent_cgroups
from .hostmounts import mounts_dir, release_stages, stage_mounts
from .processes import SandboxProcesses, runtime_programs
from .runtimes import OciRuntime
from .spec import (
    BundleInputs,
    ExtraBind,
    GrantedBind,
    SandboxLimits,
    UserMapping,
    WeakSpec,
    build_spec,
    validate_spec,
)
from .volumes import DiskCaps, Volumes

__all__ = ["ImageSource", "OciIsolator", "VerifiedImage", "cgroup_parent", "container_id"]

logger = logging.getLogger(__name__)

CONTAINER_PREFIX = "ic-"
SpecHook = Callable[[dict[str, Any]], dict[str, Any]]


@attrs.frozen
class VerifiedImage:
    rootfs: Path
    args: tuple[str, ...]  # the entrypoint inside the rootfs
    digest: str


class ImageSource(Protocol):
    async def verified(self) -> VerifiedImage:
        """The image to launch, checked against its pinned digest just now. Raises
        when it does not match: a launch must fail closed."""
        ...


def container_id(session_id: str) -> str:
    return CONTAINER_PREFIX + session_id


def cgroup_parent(state_dir: Path) -> str:
    """Our sandboxes' parent cgroup, one per state directory: reconciling one control
    plane's leftovers never touches another's sandboxes on the same host."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return f"ironclaw-{digest}"


class OciIsolator:
    def __init__(self, runtime: OciRuntime, image: ImageSource, *, state_dir: Path,
                 limits: SandboxLimits | None = None, mapping: UserMapping | None = None,
                 grace_period: float = 5.0, extra_binds: tuple[ExtraBind, ...] = (),
                 spec_hook: SpecHook | None = None, allow_weakened: bool = False,
                 own_dirs: tuple[Path, ...] = (), disk: DiskCaps | None = None,
                 protected: tuple[Path, ...] = ()) -> None:
        self.runtime = runtime
        self.name = runtime.kind.value
        self.strength = runtime.strength
        self._image = image
        self._bundles = state_dir / "runtime" / "bundles"
        self._stages = mounts_dir(state_dir)
        # Never a granted mount's source, nor inside or above one: our own state, and
        # whatever else the plane keeps (the image cache).
        self._protected = tuple(str(p.resolve()) for p in (state_dir, *protected))
        # Directory trees we created (the state dir, the key dir's parent) and may open
        # for search by others (0711: enter, never list).
        self._own_dirs = (state_dir.resolve(), *(d.resolve() for d in own_dirs))
        self._cgroup_parent = cgroup_parent(state_dir)
        self._programs = runtime_programs([runtime.binary])
        self._limits = limits or SandboxLimits()
        self._mapping = mapping or UserMapping()
        self._grace = grace_period
        self._extra_binds = extra_binds
        self._spec_hook = spec_hook
        # Capped filesystems under the workspace and outbound binds (volumes.py); None
        # leaves them on the state directory's filesystem, uncapped.
        self._volumes = Volumes(state_dir, disk) if disk is not None else None
        # Only the red-team harness's negative control sets this, to prove that the
        # harness notices a weak sandbox. It is loud on purpose.
        self._allow_weakened = allow_weakened
        if allow_weakened:
            logger.critical("OCI isolator built with allow_weakened: sandboxes may be "
                            "WEAKER than the invariants (red-team negative control only)")

    @property
    def mapping(self) -> UserMapping:
        return self._mapping

    @property
    def volumes(self) -> Volumes | None:
        """The disk volumes, None when disk caps are off."""
        return self._volumes

    async def aclose(self) -> None:
        """After the last sandbox has stopped: remove our (now empty) parent cgroup,
        and release the disk volumes (nothing reads them until the next start)."""
        await trio.to_thread.run_sync(remove_parent_cgroups, self._cgroup_parent)
        if self._volumes is not None:
            await trio.to_thread.run_sync(self._volumes.release_all)

    async def mount_volumes(self) -> None:
        """At start, before any session (the recovery reads outbound directories):
        mount every existing disk volume, adopting what a killed plane left."""
        if self._volumes is not None:
            await trio.to_thread.run_sync(self._volumes.mount_existing)

    async def prepare_host(self, spec: LaunchSpec) -> None:
        """Before the session's outbound directory is watched: an inotify watch made
        before its volume is mounted would watch the directory underneath."""
        await trio.to_thread.run_sync(self._ensure_volumes, spec)

    async def release_session(self, session_dir: Path, workspace: Path | None) -> None:
        if self._volumes is not None:
            await trio.to_thread.run_sync(self._volumes.release_session, session_dir,
                                          workspace)

    def _ensure_volumes(self, spec: LaunchSpec) -> None:
        if self._volumes is not None:
            self._volumes.ensure(spec.workspace, spec.queues.outbound_dir)

    async def hand_over(self, spec: LaunchSpec, *, config_file: Path, key_file: Path
                        ) -> None:
        """A warm sandbox claimed for ``spec``'s session (``sessions.warmpool``): write
        the session's config and key into the files the sandbox was created with (in
        place: its binds hold those inodes), and give the session's paths, now the
        slot's adopted directories, to the sandbox uid as a launch does."""
        await trio.to_thread.run_sync(self._hand_over, spec, config_file, key_file)

    async def check_image(self) -> VerifiedImage:
        """Fail at start, not at the first message, when the image is missing or does
        not match its pin. A source that can prepare itself (build when nothing is
        pinned yet) does so first."""
        prepare = getattr(self._image, "prepare", None)
        # ``prepare`` verifies what it returns: hashing the image twice at start buys
        # nothing.
        image: VerifiedImage = await (prepare() if prepare is not None
                                      else self._image.verified())
        sessions = self._bundles.parent.parent / "sessions"
        await trio.to_thread.run_sync(sessions.mkdir, 0o711, True, True)
        await trio.to_thread.run_sync(_open_for_search, [sessions], self._own_dirs)
        await trio.to_thread.run_sync(_require_traversable, [image.rootfs, sessions])
        return image

    async def run(self, spec: LaunchSpec, *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
                  container_name: str | None = None, extra_args: tuple[str, ...] = ()
                  ) -> None:
        """``container_name`` overrides the session's container id: the red-team
        harness launches a second sandbox beside a session's own. ``extra_args`` follow
        the image's entrypoint (a warm sandbox's ``--await-claim``)."""
        image = await self._image.verified()
        cid = container_name or container_id(spec.session_id)
        bundle = self._bundles / cid
        gate: int | None = None
        try:
            await trio.to_thread.run_sync(self._prepare, spec, image, cid, bundle,
                                          extra_args)
            gate_path = bundle / f"{secrets.token_hex(16)}.gate"
            gate = await trio.to_thread.run_sync(_open_gate, gate_path)
            argv = self.runtime.gated_run_argv(bundle, cid, gate_path)
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
            try:
                async with open_child_process(argv, env=env, cwd=str(bundle),
                                              grace_period=self._grace) as child:
                    task_status.started(child.pid)
                    await child.wait()
            except ProcessFailed as exc:
                raise SandboxExited(exc.returncode, exc.stderr_tail) from None
            raise SandboxExited(0, child.stderr_tail)
        finally:
            if gate is not None:
                os.close(gate)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._cleanup, cid, bundle)

    # -- blocking parts, on worker threads -----------------------------------------------

    def _give_paths(self, spec: LaunchSpec) -> None:
        uid = self._mapping.agent_host_uid
        for writable in (spec.queues.outbound_dir, spec.workspace):
            writable.mkdir(parents=True, exist_ok=True)
            _give_tree(writable, uid)
            writable.chmod(0o700)
        # Readable by the sandbox, closed to every other local user. gVisor (2022)
        # ignores group permissions across its user namespace, so sharing goes by
        # owner: the inbound directory is the sandbox uid's, mode 0500 (it could chmod
        # it only through a writable mount, and it is bound read-only). The socket
        # directory stays root's (a sandbox that owned it could swap a socket), 0711,
        # and each socket in it is the sandbox uid's, 0600: anyone else who could
        # connect to model.sock could spend the operator's model credentials.
        os.chown(spec.queues.inbound_dir, uid, uid)
        spec.queues.inbound_dir.chmod(0o500)
        spec.socket_dir.chmod(0o711)
        for entry in spec.socket_dir.iterdir():
            if entry.is_socket():
                os.chown(entry, uid, uid, follow_symlinks=False)
                entry.chmod(0o600)

    def _hand_over(self, spec: LaunchSpec, config_file: Path, key_file: Path) -> None:
        _write_in_place(config_file, spec.config.render().encode())
        _write_in_place(key_file, _read_key_file(spec.key_file))
        self._give_paths(spec)

    def _prepare(self, spec: LaunchSpec, image: VerifiedImage, cid: str,
                 bundle: Path, extra_args: tuple[str, ...] = ()) -> None:
        self._cleanup(cid, bundle)  # a crashed control plane's leftover, if any
        uid = self._mapping.agent_host_uid
        self._ensure_volumes(spec)
        points = stage_mounts(spec.mounts, self._stages / cid, self._protected)
        granted = tuple(GrantedBind(point, mount.target, mount.writable)
                        for point, mount in zip(points, spec.mounts, strict=True))
        # The agent learns its mounts from the config: exactly those bound here.
        agent_config = attrs.evolve(spec.config, mounts=tuple(
            MountedDir(Path(g.destination), g.writable) for g in granted))
        config_file = spec.run_dir / "agent.json"
        _write_private(config_file, agent_config.render().encode(), uid)
        _give_key_file(spec.key_file, uid)
        self._give_paths(spec)
        needed = [image.rootfs, spec.queues.inbound_dir,
                  spec.queues.outbound_dir, spec.key_file, config_file,
                  spec.socket_dir, spec.workspace, *points,
                  *(extra.source for extra in self._extra_binds)]
        _open_for_search(needed, self._own_dirs)
        _require_traversable(needed)
        inputs = BundleInputs(
            container_id=cid, rootfs=image.rootfs,
            inbound_dir=spec.queues.inbound_dir, outbound_dir=spec.queues.outbound_dir,
            key_file=spec.key_file, config_file=config_file, socket_dir=spec.socket_dir,
            workspace=spec.workspace, cgroups_path=f"/{self._cgroup_parent}/{cid}",
            args=(*image.args, *extra_args),
            gvisor=self.runtime.gvisor, limits=self._limits, mapping=self._mapping,
            extra_binds=self._extra_binds, granted=granted)
        config = build_spec(inputs)
        if self._spec_hook is not None:
            config = self._spec_hook(config)
            try:
                validate_spec(config, inputs)
            except WeakSpec:
                if not self._allow_weakened:
                    raise
                logger.critical("launching %s with a WEAKENED spec", cid)
        bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.runtime.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(bundle / "config.json", json.dumps(config, indent=1).encode(), None)

    def _cleanup(self, cid: str, bundle: Path) -> None:
        """Prove the container gone before anything may launch it again: kill every
        process of it (its runtime invocations name its bundle; its container
        processes sit in its cgroup) and outwait them, then delete it. A runtime's
        ``delete`` alone is not proof: a ``run`` of a killed control plane may still be
        creating the container, which the runtime does not list yet."""
        SandboxProcesses(self._programs, bundle, cgroup_parent=self._cgroup_parent,
                         container=cid).kill_all()
        self.runtime.remove(cid)
        shutil.rmtree(bundle, ignore_errors=True)
        release_stages(self._stages / cid)
        remove_container_cgroups(self._cgroup_parent, cid)


def _open_gate(path: Path) -> int:
    """The launch gate (``OciRuntime.gated_run_argv``): a fresh FIFO in the 0700 bundle
    directory, under a name no earlier launch used, held open read-write by this
    control plane alone (so opening never blocks), with ``go`` already written. The
    word lives only as long as some process holds the FIFO open."""
    os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    os.write(fd, b"go\n")
    return fd


class UnreachablePath(RuntimeError):
    """A path the sandbox needs cannot be reached by the runtime inside the user
    namespace: a parent directory lacks search permission for others."""


def _open_for_search(paths: list[Path], own_dirs: tuple[Path, ...]) -> None:
    for path in paths:
        for parent in path.resolve().parents:
            if any(parent == own or own in parent.parents for own in own_dirs):
                mode = parent.stat().st_mode & 0o7777
                if not mode & 0o001:
                    parent.chmod(mode | 0o011)


def _require_traversable(paths: list[Path]) -> None:
    """The runtime mounts the rootfs and binds from inside the user namespace, as an
    unprivileged host uid, so every parent of every source needs o+x (search, not
    read). Directories of the state tree are ours to open that far (0711 lists
    nothing); any other one is the operator's to fix, and we say which."""
    for path in paths:
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise UnreachablePath(
                    f"{parent} (mode {mode & 0o7777:o}) blocks the sandbox from reaching "
                    f"{path}: give it search permission for others (chmod o+x), or "
                    "move the state or image directory")


def _write_private(path: Path, data: bytes, owner: int | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
    try:
        os.write(fd, data)
        if owner is not None:
            os.fchown(fd, owner, owner)
    finally:
        os.close(fd)
    tmp.replace(path)


def _write_in_place(path: Path, data: bytes) -> None:
    """Rewrite a host-owned file that a sandbox has bound (read-only), keeping its
    inode: the bind shows the inode it was created with, never a replacement."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise UnsafeKeyFile(f"{path} is not a regular file with one link")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


class UnsafeKeyFile(RuntimeError):
    """The session key file is not a plain file of its own: something replaced it."""


def _give_key_file(path: Path, uid: int) -> None:
    """The key file to the sandbox uid, read-only. Through a descriptor opened without
    following a symlink, and checked on that descriptor: a path-based chown or chmod
    would follow a link planted in its place to whatever it names."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise UnsafeKeyFile(f"{path} is not a regular file with one link")
        os.fchown(fd, uid, uid)
        os.fchmod(fd, 0o400)
    finally:
        os.close(fd)


def _give_tree(root: Path, uid: int) -> None:
    """Make ``root`` and what is in it the sandbox uid's. Only what is not already
    theirs is touched, so a large workspace costs a walk, not a rewrite.

    A live sibling sandbox shares the workspace and may swap any directory in it for a
    symlink while we walk. So the walk goes through descriptors: every directory is
    held open (``os.fwalk`` opens each one relative to its parent's descriptor and
    skips it unless it is the very directory it listed), and every change is made
    relative to the held descriptor, on a single name, never following a link. A swap
    can make us miss an entry; it cannot send a chown outside the tree."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(root_fd)
        if info.st_uid != uid or info.st_gid != uid:
            os.fchown(root_fd, uid, uid)
        for _path, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=root_fd):
            for name in (*dirnames, *filenames):
                _give_entry(name, dir_fd, uid)
    finally:
        os.close(root_fd)


def _give_entry(name: str, dir_fd: int, uid: int) -> None:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if info.st_uid != uid or info.st_gid != uid:
            os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass  # removed by the sandbox while we walked
