"""``ironclaw-controlplane backup`` and ``restore``: an online snapshot of a state
directory, and putting one onto a fresh host.

The archive (tar, gzip) holds, under ``state/``, each piece taken so that it is
consistent on its own while the daemon runs:

- ``host.db``: SQLite's online backup, through a second connection under the same
  key; the copy is a committed state and stays encrypted.
- ``audit/head.json`` first, then ``audit/audit.log`` cut after the entry that head
  names: an entry is on disk before the head names it, so the pair verifies.
- every session's ``inbound.db`` and ``outbound.db``: copied while their commit fence
  holds one even value (the reader's own discipline, ``copy_snapshot``), ciphertext.
- ``workspaces/``: the agent groups' files as they are (a file an agent is writing
  may be caught half written, as with any file backup), read as every sandbox-written
  file is: through descriptors and the hardened opener (:func:`add_workspaces`); a
  FIFO, device, socket or hard link an agent made is left out and counted.
- ``keys/sealed-keys.json`` last, so it seals every session the archive holds.

The master key is left out unless ``--include-master-key``: everything else in the
archive is ciphertext under it, so an archive without it can sit anywhere, and the
key is kept apart (a password manager, a second medium). ``restore`` takes it back
with ``--master-key FILE``.

``restore`` writes into a state directory that is new or empty, checks that the key
opens the sealed store, opens host.db (which runs every migration this version has),
and verifies the audit chain before it reports success.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlcipher3
import trio

from ironclaw import __version__
from ironclaw.cli.daemon_settings import state_dir_from
from ironclaw.cli.init import WeakSetup, check_state_dir
from ironclaw.contract.queue.fence import FenceUnreadable, WriterFence, read_fence
from ironclaw.contract.queue.files import copy_snapshot, fence_path_for
from ironclaw.contract.untrusted_files import (
    UnsafeFile,
    UntrustedFileTooLarge,
    copy_bounded,
    open_untrusted,
)
from ironclaw.host.audit import verify_file
from ironclaw.host.audit.entry import decode_line
from ironclaw.host.config.file import load_config_file
from ironclaw.host.keys import (
    FileMasterKeySource,
    KeyCustodyError,
    KeyStore,
    Purpose,
    master_fingerprint,
)
from ironclaw.host.store import open_host_store

FORMAT = "ironclaw-backup"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
QUEUE_FILES = (("inbound", "inbound.db"), ("outbound", "outbound.db"))
MAX_AUDIT_LINE = 64 * 1024


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says why."""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"ironclaw-controlplane {prog}",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, metavar="FILE")
    parser.add_argument("--state-dir", type=Path, default=None)
    return parser


# --- backup -------------------------------------------------------------------------

def _member(tar: tarfile.TarFile, name: str, data: bytes, like: os.stat_result | None,
            mode: int = 0o600) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(like.st_mtime if like else time.time())
    info.mode = stat.S_IMODE(like.st_mode) if like else mode
    if like is not None:
        info.uid, info.gid = like.st_uid, like.st_gid
    tar.addfile(info, io.BytesIO(data))


def _directory(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tar.gettarinfo(str(path), arcname=name)
    tar.addfile(info)


def snapshot_host_db(path: Path, key: bytes) -> bytes:
    def keyed(conn: Any) -> Any:
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        conn.execute("PRAGMA cipher_compatibility = 4")
        return conn

    with tempfile.TemporaryDirectory(prefix="ironclaw-backup-") as scratch:
        copy = Path(scratch) / "host.db"
        source = keyed(sqlcipher3.connect(f"file:{path}?mode=ro", uri=True,
                                          isolation_level=None))
        try:
            target = keyed(sqlcipher3.connect(str(copy), isolation_level=None))
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
        return copy.read_bytes()


def snapshot_audit(audit_dir: Path) -> tuple[bytes, bytes, int]:
    """The head, and the log through the entry it names."""
    head = (audit_dir / "head.json").read_bytes()
    seq = int(json.loads(head)["seq"])
    kept = bytearray()
    with open(audit_dir / "audit.log", "rb") as log:
        for line in log:
            if not line.endswith(b"\n"):
                break  # a torn tail (a crash mid-write) is past the head anyway
            kept += line
            if decode_line(line.rstrip(b"\n")).seq >= seq:
                return head, bytes(kept), seq
    raise BackupError(f"audit.log ends before the entry head.json names (seq {seq})")


def snapshot_queue(db: Path) -> bytes:
    with tempfile.TemporaryFile(prefix="ironclaw-backup-") as scratch:
        copy_snapshot(db, scratch.fileno())
        scratch.seek(0)
        return scratch.read()


# No file in a size-capped workspace volume is larger; the cap only bounds a backup
# of a workspace that predates the volumes.
MAX_WORKSPACE_FILE_BYTES = 4 << 30


def add_workspaces(tar: tarfile.TarFile, root: Path, arcname: str) -> int:
    """Every directory, symlink (kept as a link, never followed) and lone regular file
    under ``root``, which agents write. The walk goes through directory descriptors and
    each file is opened by the hardened opener relative to its directory, so no swap of
    a directory for a symlink leads the backup out of the workspace, and a FIFO, device,
    socket or hard link is left out rather than opened. Returns how many were left out."""
    left_out = 0
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(root, follow_symlinks=False):
        relative = os.path.relpath(dirpath, root)
        base = arcname if relative == "." else f"{arcname}/{relative}"
        _entry(tar, base, os.fstat(dir_fd), "")
        # A symlink to a directory is listed with the directories and never entered.
        for name in [*filenames, *dirnames]:
            try:
                info = os.lstat(name, dir_fd=dir_fd)
                if stat.S_ISLNK(info.st_mode):
                    _entry(tar, f"{base}/{name}", info, os.readlink(name, dir_fd=dir_fd))
                elif not stat.S_ISDIR(info.st_mode):
                    _add_file(tar, f"{base}/{name}", name, dir_fd)
            except (UnsafeFile, UntrustedFileTooLarge, FileNotFoundError):
                left_out += 1  # not a lone regular file, or gone: never opened
    return left_out


def _add_file(tar: tarfile.TarFile, arcname: str, name: str, dir_fd: int) -> None:
    with open_untrusted(name, max_bytes=MAX_WORKSPACE_FILE_BYTES, dir_fd=dir_fd) as (fd, _), \
            tempfile.TemporaryFile(prefix="ironclaw-backup-") as scratch:
        size = copy_bounded(fd, scratch.fileno(), MAX_WORKSPACE_FILE_BYTES)
        scratch.seek(0)
        member = _tarinfo(arcname, os.fstat(fd))
        member.size = size
        tar.addfile(member, scratch)


def _tarinfo(name: str, info: os.stat_result) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.mtime = int(info.st_mtime)
    member.mode = stat.S_IMODE(info.st_mode)
    member.uid, member.gid = info.st_uid, info.st_gid
    return member


def _entry(tar: tarfile.TarFile, name: str, info: os.stat_result, link: str) -> None:
    """A directory or a symlink, from its ``lstat``."""
    member = _tarinfo(name, info)
    if stat.S_ISLNK(info.st_mode):
        member.type, member.linkname = tarfile.SYMTYPE, link
    else:
        member.type = tarfile.DIRTYPE
    tar.addfile(member)


def write_backup(state: Path, to: Path, *, config_file: Path | None,
                 include_master_key: bool) -> dict[str, Any]:
    # Read only: opening the store for writing could race the daemon's own writes.
    keystore = KeyStore.open_read_only(state, FileMasterKeySource.in_state_dir(state))
    try:
        db_key = keystore.subkey(Purpose.HOST_DB)
        fingerprint = keystore.master_fingerprint
    finally:
        keystore.close()
    started = time.monotonic()
    partial = to.with_name(to.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        manifest = _write_archive(os.fdopen(fd, "wb"), state, fingerprint, db_key,
                                  config_file=config_file,
                                  include_master_key=include_master_key)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, to)
    return {**manifest, "seconds": round(time.monotonic() - started, 3),
            "bytes": to.stat().st_size}


def _write_archive(raw: io.BufferedWriter, state: Path, fingerprint: str, db_key: bytes, *,
                   config_file: Path | None, include_master_key: bool) -> dict[str, Any]:
    sessions = 0
    with raw:
        with tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _directory(tar, "state", state)
            _member(tar, "state/host.db", snapshot_host_db(state / "host.db", db_key),
                    (state / "host.db").stat())
            _directory(tar, "state/audit", state / "audit")
            head, log, audit_seq = snapshot_audit(state / "audit")
            _member(tar, "state/audit/head.json", head, None)
            _member(tar, "state/audit/audit.log", log, None)
            sessions_dir = state / "sessions"
            if sessions_dir.is_dir():
                _directory(tar, "state/sessions", sessions_dir)
                for session in sorted(sessions_dir.iterdir()):
                    if not session.is_dir() or session.is_symlink():
                        continue
                    sessions += 1
                    _directory(tar, f"state/sessions/{session.name}", session)
                    for sub, name in QUEUE_FILES:
                        db = session / sub / name
                        if not db.is_file():
                            continue
                        base = f"state/sessions/{session.name}/{sub}"
                        _directory(tar, base, session / sub)
                        _member(tar, f"{base}/{name}", snapshot_queue(db), db.lstat())
            left_out = 0
            if (state / "workspaces").is_dir():
                left_out = add_workspaces(tar, state / "workspaces", "state/workspaces")
            _directory(tar, "state/keys", state / "keys")
            keys = state / "keys" / "sealed-keys.json"
            sealed = keys.read_bytes()
            if json.loads(sealed).get("master_fingerprint") != fingerprint:
                raise BackupError("the master key was rotated while the backup ran; run it again")
            _member(tar, "state/keys/sealed-keys.json", sealed, keys.stat())
            if include_master_key:
                master = state / "keys" / "master.key"
                _member(tar, "state/keys/master.key", master.read_bytes(), master.stat())
            if config_file is not None:
                _member(tar, "config.toml", config_file.read_bytes(), None)
            manifest = {"format": FORMAT, "version": FORMAT_VERSION,
                        "ironclaw_version": __version__, "created_at": int(time.time()),
                        "master_fingerprint": fingerprint, "audit_seq": audit_seq,
                        "sessions": sessions, "includes_master_key": include_master_key,
                        "workspace_entries_left_out": left_out,
                        "includes_config": config_file is not None}
            _member(tar, MANIFEST, json.dumps(manifest, indent=1).encode() + b"\n", None)
        raw.flush()
        os.fsync(raw.fileno())  # on disk before it replaces an older backup
    return manifest


def main_backup(argv: list[str]) -> int:
    parser = _parser("backup")
    parser.add_argument("--to", type=Path, required=True, metavar="FILE",
                        help="the archive to write (tar.gz, 0600)")
    parser.add_argument("--include-master-key", action="store_true",
                        help="put the master key in the archive too (then guard the "
                             "archive as you would the key)")
    args = parser.parse_args(argv)
    try:
        from_file = load_config_file(args.config) if args.config is not None else {}
        state = state_dir_from(args, from_file).resolve()
        report = write_backup(state, args.to.absolute(), config_file=args.config,
                              include_master_key=args.include_master_key)
    except (OSError, ValueError, BackupError, KeyCustodyError) as exc:
        print(f"ironclaw-controlplane backup: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0


# --- restore ------------------------------------------------------------------------

def _state_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members under ``state/``, renamed relative to it, so that extraction into the
    state directory itself lets the tar filter refuse anything that would land outside
    it (through ``..`` or a symlink an earlier member made)."""
    members = []
    for member in tar.getmembers():
        if member.name in (MANIFEST, "config.toml", "state"):
            continue
        if not member.name.startswith("state/") or ".." in member.name.split("/"):
            raise BackupError(f"unexpected member {member.name!r:.100} in the archive")
        if not (member.isfile() or member.isdir() or member.issym()):
            raise BackupError(f"{member.name!r:.100} is neither a file, a directory nor "
                              "a link")
        member.name = member.name[len("state/"):]
        members.append(member)
    return members


def _settle_fences(state: Path) -> None:
    """A restored queue file needs an even fence beside it before anyone reads it."""
    for db in sorted(state.glob("sessions/*/*/*.db")):
        fence = fence_path_for(db)
        try:
            if read_fence(fence) % 2 == 0:
                continue
        except FenceUnreadable:
            pass
        writer = WriterFence(fence)
        try:
            with writer.writing():
                pass
        finally:
            writer.close()
        owner = db.parent.stat()
        os.chown(fence, owner.st_uid, owner.st_gid)


async def _open_and_verify(state: Path) -> dict[str, Any]:
    keystore = await trio.to_thread.run_sync(
        KeyStore.open, state, FileMasterKeySource.in_state_dir(state))
    try:
        async with open_host_store(state / "host.db", keystore.subkey(Purpose.HOST_DB)):
            pass  # opening runs every migration this version knows
        report = await trio.to_thread.run_sync(
            verify_file, state / "audit" / "audit.log", keystore.subkey(Purpose.AUDIT_CHAIN))
    finally:
        keystore.close()
    return {"audit_ok": report.ok, "audit_entries": report.entries,
            "audit_problems": list(report.problems)[:5]}


def restore(archive: Path, state: Path, *, master_key: Path | None,
            config_to: Path | None) -> dict[str, Any]:
    check_state_dir(state)
    if state.exists() and any(state.iterdir()):
        raise BackupError(f"{state} is not empty: restore goes into a new or empty "
                          "directory (move the old one aside first)")
    started = time.monotonic()
    with tarfile.open(archive, mode="r:gz") as tar:
        manifest_file = tar.extractfile(MANIFEST)
        if manifest_file is None:
            raise BackupError(f"{archive} has no {MANIFEST}: not an IronClaw backup")
        manifest = json.loads(manifest_file.read())
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise BackupError(f"{archive}: unknown backup format {manifest.get('format')!r} "
                              f"version {manifest.get('version')!r}")
        if master_key is None and not manifest.get("includes_master_key"):
            raise BackupError("the archive holds no master key (by design): pass "
                              "--master-key FILE, the key kept apart from the backup")
        if master_key is not None:
            given = master_fingerprint(FileMasterKeySource(master_key).load())
            if given != manifest.get("master_fingerprint"):
                raise BackupError(f"{master_key} is master {given}, but the backup was "
                                  f"sealed under master {manifest.get('master_fingerprint')}")
        state.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        state.mkdir(mode=0o700, exist_ok=True)
        tar.extractall(state, members=_state_members(tar), filter="tar")
        if config_to is not None and manifest.get("includes_config"):
            config = tar.extractfile("config.toml")
            assert config is not None
            fd = os.open(config_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(config.read())
    state.chmod(0o700)
    if master_key is not None:
        data = master_key.read_bytes()
        fd = os.open(state / "keys" / "master.key",
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    _settle_fences(state)
    checked = trio.run(_open_and_verify, state)
    if not checked["audit_ok"]:
        raise BackupError(f"the restored audit chain does not verify: "
                          f"{checked['audit_problems']}")
    return {**checked, "sessions": manifest.get("sessions"),
            "seconds": round(time.monotonic() - started, 3)}


def main_restore(argv: list[str]) -> int:
    parser = _parser("restore")
    parser.add_argument("--from", dest="archive", type=Path, required=True,
                        metavar="FILE", help="an archive made by backup")
    parser.add_argument("--master-key", type=Path, default=None, metavar="FILE",
                        help="the master key file (keys/master.key of the old host)")
    parser.add_argument("--config-to", type=Path, default=None, metavar="FILE",
                        help="write the archived config file here (never overwritten)")
    args = parser.parse_args(argv)
    try:
        from_file = load_config_file(args.config) if args.config is not None else {}
        state = state_dir_from(args, from_file)
        report = restore(args.archive, state, master_key=args.master_key,
                         config_to=args.config_to)
    except (OSError, ValueError, BackupError, KeyCustodyError, tarfile.TarError) as exc:
        kind = "refused" if isinstance(exc, WeakSetup) else "failed"
        print(f"ironclaw-controlplane restore: {kind}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0
