"""read_file, write_file, list_dir: the workspace, and the granted host mounts at
``/mnt/<name>/...`` (``sandbox_agent.mounts``), nothing else."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import trio

from ..workspace import Workspace, WorkspaceError
from .base import STRING, Tool, ToolContext, ToolError, required_string, schema, string_arg

MAX_FILE_BYTES = 1024 * 1024
MAX_LIST_ENTRIES = 500

T = TypeVar("T")


async def _in_thread(call: Callable[[], T]) -> T:
    try:
        return await trio.to_thread.run_sync(call)
    except WorkspaceError as exc:
        raise ToolError(str(exc)) from None


def _where(ctx: ToolContext, path: str, *, write: bool = False) -> tuple[Workspace, str]:
    """The directory a tool's path lies in (a granted mount, or the workspace) and the
    path relative to it."""
    if not ctx.mounts.names_a_mount(path):
        return ctx.workspace, path
    try:
        return ctx.mounts.place(path, write=write)
    except WorkspaceError as exc:
        raise ToolError(str(exc)) from None


async def read_file(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    directory, path = _where(ctx, required_string(args, "path", max_bytes=4096))
    return await _in_thread(functools.partial(
        directory.read_text, path, max_bytes=MAX_FILE_BYTES))


async def write_file(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    named = required_string(args, "path", max_bytes=4096)
    directory, path = _where(ctx, named, write=True)
    content = string_arg(args, "content", max_bytes=MAX_FILE_BYTES)
    assert content is not None
    written = await _in_thread(functools.partial(
        directory.write_text, path, content, max_bytes=MAX_FILE_BYTES))
    return f"wrote {written} bytes to {named}"


async def list_dir(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    named = string_arg(args, "path", max_bytes=4096, required=False) or "."
    if named.rstrip("/") == "/mnt":
        return "\n".join(ctx.mounts.names()) or "(no host directory is mounted)"
    directory, path = _where(ctx, named)
    lines = await _in_thread(functools.partial(
        directory.list_dir, path, max_entries=MAX_LIST_ENTRIES))
    return "\n".join(lines) if lines else "(empty directory)"


FILE_TOOLS = (
    Tool("read_file",
         f"Read a UTF-8 text file from the workspace (at most {MAX_FILE_BYTES} bytes). "
         "The path is relative to the workspace, or /mnt/<name>/... in a host directory "
         "mounted for you (list_dir /mnt shows them).",
         schema({"path": STRING}, ["path"]), read_file),
    Tool("write_file",
         f"Create or replace a text file in the workspace (at most {MAX_FILE_BYTES} bytes), "
         "or in a host directory mounted writable for you (/mnt/<name>/...). "
         "Missing parent directories are created.",
         schema({"path": STRING, "content": STRING}, ["path", "content"]), write_file),
    Tool("list_dir",
         "List a workspace directory (default: the workspace root), /mnt (the host "
         "directories mounted for you) or a directory in one of them.",
         schema({"path": STRING}), list_dir),
)
