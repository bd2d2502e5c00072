"""read_file, write_file, list_dir: the workspace, and nothing outside it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import trio

from ..workspace import WorkspaceError
from .base import STRING, Tool, ToolContext, ToolError, required_string, schema, string_arg

MAX_FILE_BYTES = 1024 * 1024
MAX_LIST_ENTRIES = 500

T = TypeVar("T")


async def _in_thread(call: Callable[[], T]) -> T:
    try:
        return await trio.to_thread.run_sync(call)
    except WorkspaceError as exc:
        raise ToolError(str(exc)) from None


async def read_file(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    path = required_string(args, "path", max_bytes=4096)
    return await _in_thread(functools.partial(
        ctx.workspace.read_text, path, max_bytes=MAX_FILE_BYTES))


async def write_file(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    path = required_string(args, "path", max_bytes=4096)
    content = string_arg(args, "content", max_bytes=MAX_FILE_BYTES)
    assert content is not None
    written = await _in_thread(functools.partial(
        ctx.workspace.write_text, path, content, max_bytes=MAX_FILE_BYTES))
    return f"wrote {written} bytes to {path}"


async def list_dir(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    path = string_arg(args, "path", max_bytes=4096, required=False) or "."
    lines = await _in_thread(functools.partial(
        ctx.workspace.list_dir, path, max_entries=MAX_LIST_ENTRIES))
    return "\n".join(lines) if lines else "(empty directory)"


FILE_TOOLS = (
    Tool("read_file",
         f"Read a UTF-8 text file from the workspace (at most {MAX_FILE_BYTES} bytes). "
         "The path is relative to the workspace.",
         schema({"path": STRING}, ["path"]), read_file),
    Tool("write_file",
         f"Create or replace a text file in the workspace (at most {MAX_FILE_BYTES} bytes). "
         "Missing parent directories are created.",
         schema({"path": STRING, "content": STRING}, ["path", "content"]), write_file),
    Tool("list_dir",
         "List a workspace directory (default: the workspace root).",
         schema({"path": STRING}), list_dir),
)
