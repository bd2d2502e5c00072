"""No read of a sandbox-writable file bypasses the hardened opener.

The rule (docs/threat-model.md, "Files the sandbox can write"): every file the host
opens under a sandbox-writable directory is opened through
``ironclaw.contract.untrusted_files``. A taint analysis of paths would miss aliases,
so this test takes the stricter road for opens: **every** call in the host's code
that opens a file (``open``, ``os.open``, ``os.fdopen``, ``Path.open``/``read_*``/
``write_*``, ``sqlcipher3.connect``) must appear in ``REVIEWED`` with the reason it
is safe. A new open anywhere fails this test until someone has looked at where its
path comes from and written the reason down.

Metadata calls (``stat``, ``exists``, ``chmod``, ``unlink``, ``mkdir``...) open
nothing, so a FIFO cannot block them; they are checked by name instead: one whose
expression mentions a sandbox-writable place (outbound, inbound, heartbeat,
workspace, socket directory, fence, queue paths) must be reviewed too.

``sandbox_agent`` is not scanned: it is the sandbox. Nor is ``ironclaw.redteam``: it is
the attacker and its instruments, which the control plane may never import (an
import-linter contract holds that).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPEN_ATTRS = frozenset({"open", "read_bytes", "read_text", "write_bytes", "write_text",
                        "fdopen"})
OPEN_CALLEES = frozenset({"open", "os.open", "io.open", "sqlcipher3.connect"})
METADATA_ATTRS = frozenset({
    "stat", "lstat", "exists", "lexists", "is_file", "is_dir", "is_fifo", "is_socket",
    "is_symlink", "iterdir", "rglob", "glob", "scandir", "listdir", "walk", "getsize",
    "chmod", "chown", "lchown", "unlink", "remove", "rename", "replace", "rmtree",
    "mkdir", "symlink_to", "touch", "resolve", "readlink", "add_watch"})
SANDBOX_WRITABLE = re.compile(
    r"outbound|inbound|heartbeat|workspace|socket_dir|fence|db_path|\bqueues\b")

HARDENED = "the hardened opener itself"
HOST_PRIVATE = "a host-private path (state, keys, image, audit); no sandbox writes there"
SANDBOX_SIDE = "runs inside the sandbox, on its own files"
NOT_A_FILE = "an object's own open method, not a file open"
KERNEL_FILE = ("procfs, sysfs or cgroupfs: the kernel generates it; nothing can plant a "
               "FIFO or a link there")
OWN_WRITER = ("the host's own inbound queue: bound read-only into the sandbox under "
              "every isolating runtime")

DELETED_WORKSPACE = (
    "<state>/workspaces/<folder> is the host's (the agent writes only below it); of the "
    "agent's entries listed there, nothing is opened: each is unlinked, or removed by "
    "rmtree, which never follows a link")

WORKSPACE_ROOT = (
    "<state>/workspaces/<folder> itself is the host's directory (the agent writes only "
    "below it), opened O_DIRECTORY | O_NOFOLLOW only to walk below it through the "
    "hardened helpers")

REVIEWED: dict[tuple[str, str, str], str] = {
    ("ironclaw/contract/untrusted_files.py", "open_untrusted", "os.open"): HARDENED,
    ("ironclaw/contract/untrusted_files.py", "open_untrusted_dir", "os.open"): HARDENED,
    ("ironclaw/contract/untrusted_files.py", "create_untrusted", "os.open"): HARDENED,
    ("ironclaw/host/attachments/inbox.py", "_Target.__init__", "os.open"): WORKSPACE_ROOT,
    ("ironclaw/host/attachments/outbox.py", "read_workspace_file", "os.open"):
        WORKSPACE_ROOT,
    ("ironclaw/host/config/statedir_lock.py", "hold_state_dir", "os.open"): HOST_PRIVATE,
    # Backup and restore: the sandbox-written parts (queue files, workspaces) go
    # through copy_snapshot and the hardened opener; these are the rest.
    ("ironclaw/cli/backup.py", "snapshot_host_db", "sqlcipher3.connect"):
        HOST_PRIVATE,
    ("ironclaw/cli/backup.py", "snapshot_host_db", "copy.read_bytes"):
        "the backup's own scratch copy of host.db",
    ("ironclaw/cli/backup.py", "snapshot_audit", "(...).read_bytes"):
        HOST_PRIVATE,
    ("ironclaw/cli/backup.py", "snapshot_audit", "open"):
        HOST_PRIVATE,
    ("ironclaw/cli/backup.py", "write_backup", "os.open"):
        "a file the operator names on the command line (the archive, the key, the config)",
    ("ironclaw/cli/backup.py", "write_backup", "os.fdopen"):
        "a file the operator names on the command line (the archive, the key, the config)",
    ("ironclaw/cli/backup.py", "_write_archive", "tarfile.open"):
        "a file the operator names on the command line (the archive, the key, the config)",
    ("ironclaw/cli/backup.py", "_write_archive", "(...).is_dir"):
        HOST_PRIVATE,
    ("ironclaw/cli/backup.py", "_write_archive", "keys.read_bytes"):
        HOST_PRIVATE,
    ("ironclaw/cli/backup.py", "_write_archive", "master.read_bytes"):
        HOST_PRIVATE,
    ("ironclaw/cli/backup.py", "_write_archive", "config_file.read_bytes"):
        "a file the operator names on the command line (the archive, the key, the config)",
    ("ironclaw/cli/backup.py", "_settle_fences", "os.chown"):
        "a fence the restore itself wrote into a new state directory, before any sandbox exists",
    ("ironclaw/cli/backup.py", "restore", "tarfile.open"):
        "a file the operator names on the command line (the archive, the key, the config)",
    ("ironclaw/cli/backup.py", "restore", "os.open"):
        "a file the operator names on the command line (the archive, the key, the config)",
    ("ironclaw/cli/backup.py", "restore", "os.fdopen"):
        "a file the operator names on the command line (the archive, the key, the config)",
    ("ironclaw/cli/backup.py", "restore", "master_key.read_bytes"):
        "a file the operator names on the command line (the archive, the key, the config)",
    ("ironclaw/cli/init.py", "write_token_once", "os.open"):
        "the owner token file, created 0600 and exclusive in the state directory init made",
    ("ironclaw/cli/init.py", "write_token_once", "os.fdopen"):
        "the owner token file, created 0600 and exclusive in the state directory init made",
    ("ironclaw/host/api/console/__init__.py", "_load", "(...).read_bytes"):
        "the web console's own files, read once from the installed package; no sandbox "
        "can write there",
    ("ironclaw/host/isolation/standin.py", "build_busybox_rootfs", "(...).write_text"):
        "the stand-in rootfs the host builds for tests and benchmarks, written before any "
        "sandbox runs in it",
    # The contract, imported by both sides.
    ("ironclaw/contract/agent_config.py", "AgentConfig.load", "path.read_bytes"):
        SANDBOX_SIDE,
    ("ironclaw/contract/layout.py", "write_heartbeat", "os.open"): SANDBOX_SIDE,
    ("ironclaw/contract/layout.py", "SessionLayout.create", "queues.inbound_dir.mkdir"):
        "the host creates the directory before any sandbox exists",
    ("ironclaw/contract/layout.py", "SessionLayout.create", "queues.outbound_dir.mkdir"):
        "the host creates the directory before any sandbox exists",
    ("ironclaw/contract/layout.py", "SessionLayout.create", "self.socket_dir.mkdir"):
        "a host-owned directory (the sandbox cannot write it)",
    ("ironclaw/contract/queue/fence.py", "WriterFence.__init__", "os.open"):
        "a writer's own fence: " + OWN_WRITER + " (host) or the agent's own (sandbox)",
    ("ironclaw/contract/queue/files.py", "FencedWriterFile.__init__",
     "sqlcipher3.connect"): "a writer's own file: " + OWN_WRITER,
    ("ironclaw/contract/queue/files.py", "FencedWriterFile.__init__", "os.chmod"):
        "a writer's own file: " + OWN_WRITER,
    ("ironclaw/contract/queue/files.py", "FencedWriterFile.reading",
     "self.db_path.with_name(...).exists"): "a writer's own journal; stat opens nothing",
    ("ironclaw/contract/queue/files.py", "FencedWriterFile._file_size", "os.stat"):
        "a writer's own file; stat opens nothing",
    ("ironclaw/contract/queue/files.py", "FencedWriterFile.used_bytes", "os.stat"):
        "a writer's own journal (the inbound cap counts it); stat opens nothing",
    ("ironclaw/contract/queue/files.py", "copy_snapshot", "os.path.lexists"):
        "lstat: opens nothing, follows nothing",
    ("ironclaw/contract/queue/snapshot_db.py", "expected_schema", "sqlcipher3.connect"):
        "an in-memory database",
    ("ironclaw/contract/queue/snapshot_db.py", "open_snapshot", "sqlcipher3.connect"):
        "the reader's private scratch copy, hardened before its first page is read",
    # The control plane.
    ("ironclaw/host/audit/files.py", "open_log_for_append", "os.open"): HOST_PRIVATE,
    ("ironclaw/host/audit/files.py", "read_fd", "os.open"): HOST_PRIVATE,
    ("ironclaw/host/audit/log.py", "AuditLog.run", "self.open"): NOT_A_FILE,
    ("ironclaw/host/audit/log.py", "AuditLog.open", "LogWriter.open"): HOST_PRIVATE,
    ("ironclaw/host/audit/log.py", "open_audit_log", "log.open"): NOT_A_FILE,
    ("ironclaw/host/audit/verify.py", "verify_file", "os.open"): HOST_PRIVATE,
    ("ironclaw/host/audit/verify.py", "verify_file", "os.fdopen"): HOST_PRIVATE,
    ("ironclaw/host/config/file.py", "load_config_file", "path.read_bytes"):
        "the operator's configuration file",
    ("ironclaw/host/isolation/elf.py", "is_elf", "open"): "the image build's own files",
    ("ironclaw/host/isolation/elf.py", "read_elf", "path.read_bytes"):
        "the image build's own files",
    ("ironclaw/host/isolation/image.py", "load_pinned", "path.read_text"): HOST_PRIVATE,
    ("ironclaw/host/isolation/imagebuild.py", "load_cached", "(...).read_text"):
        HOST_PRIVATE,
    ("ironclaw/host/isolation/imagebuild.py", "_lookup", "(...).read_text"): HOST_PRIVATE,
    ("ironclaw/host/isolation/imagebuild.py", "_build_into", "(...).write_bytes"):
        HOST_PRIVATE,
    ("ironclaw/host/isolation/imagebuild.py", "_build_into", "(...).write_text"):
        HOST_PRIVATE,
    ("ironclaw/host/isolation/imagebuild.py", "freeze_agent", "entry.write_text"):
        HOST_PRIVATE,
    ("ironclaw/host/isolation/imagebuild.py", "cache_lock", "open"): HOST_PRIVATE,
    ("ironclaw/host/isolation/imagebuild.py", "write_atomic", "os.fdopen"): HOST_PRIVATE,
    ("ironclaw/host/isolation/imagebuild.py", "sha256_file", "open"): HOST_PRIVATE,
    # MCP server images: the image cache and the pins in the state directory.
    ("ironclaw/host/isolation/serverimage.py", "_lookup", "(...).read_text"): HOST_PRIVATE,
    ("ironclaw/host/isolation/serverimage.py", "_build_into", "(...).write_bytes"):
        HOST_PRIVATE,
    ("ironclaw/host/isolation/serverimage.py", "_build_into", "(...).write_text"):
        HOST_PRIVATE,
    ("ironclaw/host/isolation/serverimage.py", "load_server_pin", "path.read_text"):
        HOST_PRIVATE,
    ("ironclaw/host/isolation/serverrootfs.py", "assemble_server_rootfs",
     "inside(...).write_bytes"): "the image being built, in the build's staging directory",
    ("ironclaw/host/isolation/serverlaunch.py", "ServerSandboxes._trust_file",
     "Path(...).read_bytes"): "certifi's bundle, in the installed package",
    ("ironclaw/host/isolation/serverlaunch.py", "ServerSandboxes._trust_file",
     "self._ca_bundle.read_bytes"): "the operator's CA file, named in the config",
    ("ironclaw/host/isolation/serverlaunch.py", "ServerSandboxes._trust_file",
     "path.read_bytes"): HOST_PRIVATE,
    ("ironclaw/host/isolation/server_boot.py", "start_relay", "os.open"):
        "runs inside an MCP server's sandbox (/dev/null), never on the host",
    ("ironclaw/host/mcp/sandboxed.py", "OciLauncher._open", "self._sandboxes.open"):
        NOT_A_FILE,
    ("ironclaw/host/isolation/manifest.py", "_entry", "open"):
        "the read-only image, verified against its digest",
    ("ironclaw/host/isolation/manifest.py", "_explain", "(...).read_bytes"): HOST_PRIVATE,
    ("ironclaw/host/isolation/oci.py", "_write_private", "os.open"):
        "a host-private run directory (only agent.json is bound in, read-only); "
        "O_EXCL on a fresh name",
    ("ironclaw/host/isolation/oci.py", "OciIsolator._give_paths", "os.chown"):
        "inbound is made the sandbox's before launch; bound read-only, it cannot "
        "plant anything there",
    ("ironclaw/host/isolation/oci.py", "OciIsolator._give_paths",
     "spec.queues.inbound_dir.chmod"): "as above: the directory itself, host-created",
    ("ironclaw/host/isolation/oci.py", "OciIsolator._give_paths", "spec.socket_dir.chmod"):
        "a host-owned directory",
    ("ironclaw/host/isolation/oci.py", "OciIsolator._give_paths",
     "spec.socket_dir.iterdir"): "a host-owned directory the sandbox cannot write",
    ("ironclaw/host/isolation/oci.py", "_write_in_place", "os.open"):
        "a warm sandbox's agent.json or key file: host-private run and key directories, "
        "bound read-only; O_NOFOLLOW|O_NONBLOCK, checked by fstat before the write",
    ("ironclaw/host/isolation/oci.py", "_read_key_file", "os.open"):
        "the session's key file in the checked private key directory, O_NOFOLLOW",
    ("ironclaw/host/isolation/adoption.py", "move_entries", "os.open"):
        "a directory opened O_DIRECTORY|O_NOFOLLOW to rename entries relative to it: "
        "nothing in it is opened, a link or FIFO moves as itself",
    ("ironclaw/host/isolation/adoption.py", "fence_lock", "os.open"):
        OWN_WRITER + "; its fence, O_NOFOLLOW, only locked",
    ("ironclaw/host/isolation/pool.py", "mem_available_bytes", "open"): KERNEL_FILE,
    ("ironclaw/host/sessions/warmpool.py", "WarmPool.adopt_dirs", "(...).write_text"):
        HOST_PRIVATE + " (<state>/pool/, the warm slots' markers)",
    ("ironclaw/host/sessions/warmpool.py", "WarmPool._make_dirs", "(...).write_text"):
        HOST_PRIVATE + " (<state>/pool/, the warm slots' markers)",
    ("ironclaw/host/sessions/warmpool.py", "WarmPool._clear_leftovers", "marker.read_text"):
        HOST_PRIVATE + " (<state>/pool/, the warm slots' markers)",
    ("ironclaw/host/sessions/warmpool.py", "WarmPool._make_dirs",
     "slot.spec.workspace.mkdir"): "the group's workspace directory itself, as a launch "
        "makes it: <state>/workspaces/<folder> is the host's",
    ("ironclaw/host/sessions/warmpool.py", "WarmPool._make_dirs",
     "slot.spec.key_file.write_bytes"): HOST_PRIVATE + " (a new slot's empty key file)",
    ("ironclaw/host/isolation/process.py", "ProcessIsolator.run", "(...).symlink_to"):
        "a fresh mkdtemp directory",
    ("ironclaw/host/isolation/oci.py", "_give_key_file", "os.open"):
        "the key file in the checked private key directory, opened O_NOFOLLOW|O_NONBLOCK "
        "and checked by fstat before fchown/fchmod on the descriptor",
    ("ironclaw/host/isolation/oci.py", "_open_gate", "os.open"):
        "a FIFO this call has just made in the 0700 root-owned bundle directory, "
        "opened O_RDWR|O_NONBLOCK, which never blocks; the sandbox cannot reach it",
    ("ironclaw/host/isolation/oci.py", "_give_tree", "os.open"):
        "a directory opened O_DIRECTORY|O_NOFOLLOW: a link or FIFO in its place fails "
        "at once; the walk below reads nothing, it changes owners through descriptors",
    ("ironclaw/host/isolation/processes.py", "SandboxProcesses._judge",
     "Path(...).read_bytes"): KERNEL_FILE,
    ("ironclaw/host/isolation/processes.py", "SandboxProcesses._in_cgroups",
     "Path(...).read_text"): KERNEL_FILE,
    ("ironclaw/host/isolation/processes.py", "_stat", "Path(...).read_bytes"):
        KERNEL_FILE,
    ("ironclaw/host/isolation/volumes.py", "Volumes._create", "os.open"):
        HOST_PRIVATE + " (O_EXCL in the 0700 volumes directory)",
    ("ironclaw/host/isolation/volumes.py", "Volumes.ensure", "workspace.resolve"):
        "<state>/workspaces/<folder>: every component is the host's (the agent writes "
        "only below it, and cannot rename the directory in a root-owned parent)",
    ("ironclaw/host/isolation/volumes.py", "Volumes.ensure", "outbound.resolve"):
        "<state>/sessions/<id>/outbound: every component is the host's (the agent "
        "writes only below it, and cannot rename the directory in a root-owned parent)",
    ("ironclaw/host/isolation/volumes.py", "Volumes.release_session", "workspace.is_dir"):
        DELETED_WORKSPACE,
    ("ironclaw/host/isolation/volumes.py", "Volumes.release_session", "workspace.iterdir"):
        DELETED_WORKSPACE,
    ("ironclaw/host/sessions/deletion.py", "_remove_files", "workspace.is_dir"):
        DELETED_WORKSPACE,
    ("ironclaw/host/sessions/deletion.py", "_remove_files", "workspace.is_symlink"):
        DELETED_WORKSPACE,
    ("ironclaw/host/sessions/deletion.py", "_remove_files", "workspace.iterdir"):
        DELETED_WORKSPACE,
    ("ironclaw/host/isolation/volumes.py", "Volumes._mount_former_layout", "images.glob"):
        HOST_PRIVATE + " (the 0700 volumes directory)",
    ("ironclaw/host/isolation/volumes.py", "_loop_devices", "backing.read_text"):
        KERNEL_FILE,
    ("ironclaw/host/isolation/volumes.py", "_mount_points", "open"): KERNEL_FILE,
    ("ironclaw/host/egress/public_suffix.py", "_above_a_public_suffix", "open"):
        "the Public Suffix List shipped inside an installed package",
    ("ironclaw/host/isolation/process.py", "ProcessIsolator._run", "tmp.write_text"):
        "process runtime only (no isolation at all, --dev)",
    ("ironclaw/host/isolation/process.py", "ProcessIsolator._run", "pid_file.write_text"):
        "process runtime only (no isolation at all, --dev)",
    ("ironclaw/host/isolation/process.py", "_reap_agents", "Path(...).read_bytes"):
        "/proc",
    ("ironclaw/host/isolation/process.py", "_wait_gone", "Path(...).read_text"): "/proc",
    ("ironclaw/host/isolation/rootfs.py", "write_etc", "(...).write_text"): HOST_PRIVATE,
    ("ironclaw/host/isolation/rootfs.py", "_make_mount_points", "path.write_bytes"):
        HOST_PRIVATE,
    ("ironclaw/host/isolation/runtimes.py", "cgroup_unified_is_hybrid",
     "(...).read_text"): "/sys/fs/cgroup",
    ("ironclaw/host/sockets/unix.py", "bind_unix_socket", "os.open"):
        "O_PATH of the socket directory, checked host-owned and not group/other writable",
    ("ironclaw/host/private_files.py", "fsync_dir", "os.open"): HOST_PRIVATE,
    ("ironclaw/host/private_files.py", "_write_temp", "os.open"): HOST_PRIVATE,
    ("ironclaw/host/private_files.py", "_write_temp", "os.fdopen"): HOST_PRIVATE,
    ("ironclaw/host/private_files.py", "read_private_file", "os.open"): HOST_PRIVATE,
    ("ironclaw/host/private_files.py", "read_private_file", "os.fdopen"): HOST_PRIVATE,
    ("ironclaw/host/sessions/session_actor.py", "SessionActor._prepare", "workspace.mkdir"):
        "mkdir opens nothing; exist_ok on a directory the host created",
    ("ironclaw/host/sessions/manager.py", "Sessions._has_outstanding_work",
     "paths.inbound_db.exists"): "stat opens nothing; the read itself is hardened",
    ("ironclaw/host/sessions/manager.py", "Sessions._has_outstanding_work",
     "paths.outbound_db.exists"): "stat opens nothing; the read itself is hardened",
    ("ironclaw/host/sessions/tail.py", "OutboundTail.run", "notify.add_watch"):
        "inotify on the directory, which the host created; opens no file in it",
    ("ironclaw/host/store/host_store.py", "HostStore.run", "self.open"): NOT_A_FILE,
    ("ironclaw/host/store/host_store.py", "open_host_store", "store.open"): NOT_A_FILE,
    ("ironclaw/host/store/database.py", "open_database", "sqlcipher3.connect"):
        HOST_PRIVATE,
    # Operator tools.
    ("ironclaw/cli/ironctl/app.py", "main", "open"): "os.devnull",
    ("ironclaw/cli/ironctl/client.py", "read_token_file", "open"):
        "a file the operator names",
    ("ironclaw/cli/ironctl/context.py", "read_text_arg", "open"):
        "a file the operator names",
    ("ironclaw/cli/ironctl/redteam.py", "cmd_redteam", "trio.Path(...).write_text"):
        "the report file the operator names",
    ("ironclaw/runtime/_process_group.py", "_has_live_member", "open"): "/proc",
    # A granted mount's source, walked from / with O_PATH|O_NOFOLLOW|O_DIRECTORY: an
    # O_PATH descriptor reads nothing and never blocks (a FIFO fails O_DIRECTORY), and
    # a symlink on the way fails the open. The host never opens what is inside a mount.
    ("ironclaw/host/isolation/hostmounts.py", "open_beneath", "os.open"):
        "an O_PATH walk of an approved mount source, never following a link: it opens "
        "no file for reading, and nothing inside the mount",
    # Re-keying a queue file (a session key rotation). Its writer is stopped; the
    # live file is read only through copy_snapshot (the hardened opener).
    ("ironclaw/host/sessions/rekey.py", "rekey_queue_file", "os.path.lexists"):
        "lstat: opens nothing, follows no link",
    ("ironclaw/host/sessions/rekey.py", "rekey_queue_file", "sqlcipher3.connect"):
        "the host's own scratch copy in the session directory (root-owned), whose "
        "schema open_snapshot has just checked",
    ("ironclaw/host/sessions/rekey.py", "_take_place_of", "os.lstat"):
        "lstat: opens nothing, follows no link; only the owner and mode are read",
    ("ironclaw/host/sessions/rekey.py", "_take_place_of", "os.open"):
        "the host's own scratch copy in the root-owned session directory (O_NOFOLLOW); "
        "and the queue directory with O_DIRECTORY | O_NOFOLLOW, for fsync: a FIFO, "
        "device or link there fails to open instead of blocking. The copy beside the "
        "live file is mkstemp's fresh O_EXCL inode, used through its descriptor only",
    ("ironclaw/host/sessions/rekey.py", "_take_place_of", "os.unlink"):
        "unlinks the name, never follows a link; the writer is stopped",
    ("ironclaw/host/sessions/rekey.py", "_take_place_of", "os.replace"):
        "rename replaces the name whatever it points at, never following a link",

}


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.found: list[tuple[tuple[str, str, str], int]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef
                          | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]
    visit_ClassDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> None:
        callee = ast.unparse(node.func)
        attr = node.func.attr if isinstance(node.func, ast.Attribute) else None
        opens = callee in OPEN_CALLEES or attr in OPEN_ATTRS
        touches = (attr in METADATA_ATTRS
                   and SANDBOX_WRITABLE.search(ast.unparse(node)) is not None)
        if opens or touches:
            key = (self.module, ".".join(self.scope) or "<module>",
                   re.sub(r"\(.*\)", "(...)", callee))
            self.found.append((key, node.lineno))
        self.generic_visit(node)


def file_calls(source: str, module: str) -> list[tuple[tuple[str, str, str], int]]:
    finder = _Finder(module)
    finder.visit(ast.parse(source))
    return finder.found


def host_file_calls() -> Iterator[tuple[tuple[str, str, str], int]]:
    for path in sorted((ROOT / "ironclaw").rglob("*.py")):
        if path.is_relative_to(ROOT / "ironclaw" / "redteam"):
            continue
        yield from file_calls(path.read_text(), str(path.relative_to(ROOT)))


def test_every_file_open_in_the_host_is_hardened_or_reviewed() -> None:
    found = list(host_file_calls())
    unreviewed = sorted(f"{key[0]}:{line} {key[1]}: {key[2]}"
                        for key, line in found if key not in REVIEWED)
    assert not unreviewed, (
        "file access not reviewed; route a read of a sandbox-writable file through "
        "ironclaw.contract.untrusted_files, or add the call to REVIEWED with its reason:\n"
        + "\n".join(unreviewed))
    stale = sorted(set(REVIEWED) - {key for key, _ in found})
    assert not stale, f"REVIEWED lists calls that no longer exist: {stale}"


def test_the_scan_sees_the_reads_that_once_stalled_the_plane() -> None:
    """A negative control: the very shapes of the bugs this rule fixed are found."""
    old_heartbeat = (
        "def read_heartbeat(path):\n"
        "    with open(path, 'rb') as handle:\n"
        "        return handle.read(64)\n")
    old_snapshot = (
        "def _read_all(path, max_bytes):\n"
        "    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)\n")
    aliased = "def f(queues):\n    return Path(queues.heartbeat).read_bytes()\n"
    metadata = "def g(spec):\n    spec.queues.outbound_dir.chmod(0o700)\n"
    found = {key for source in (old_heartbeat, old_snapshot, aliased, metadata)
             for key, _ in file_calls(source, "m.py")}
    assert found == {("m.py", "read_heartbeat", "open"), ("m.py", "_read_all", "os.open"),
                     ("m.py", "f", "Path(...).read_bytes"),
                     ("m.py", "g", "spec.queues.outbound_dir.chmod")}
    assert not found & set(REVIEWED)
