"""MCP servers in sandboxes: what the wall costs a tool call, a start, and memory.

One run, one server (the real ``mcp-server-time`` from PyPI, in its server image),
three ways: ``direct`` (a plain child process of the plane, the ``process`` runtime's
launcher: no wall), and its own sandbox under ``runsc`` and ``runc``
(``ServerSandboxes``, the production path). For each:

- tool-call latency: ``tools/call get_current_time`` over stdio on a warm instance,
  the variants' calls interleaved round-robin so that load on the machine falls on
  all alike; p50 and p99, and the ratio to ``direct``;
- cold start: from the launch to the answer to ``initialize`` (image re-hash,
  bundle, runtime, interpreter start, imports), fresh instance each time;
- memory: PSS of the instance's whole process tree (runtime, Sentry, gofer, server)
  with one instance and with ``MEMORY_INSTANCES`` at once; the difference, divided,
  is what each more instance costs, which is what one sandbox per session (rather
  than per agent group) costs per extra live session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import trio

from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.host.isolation.serverimage import ServerRecipe, ensure_server_image
from ironclaw.host.isolation.serverlaunch import ServerLaunch, ServerSandboxes
from ironclaw.host.mcp.launch import McpServerEntry, ProcessLauncher, ServerPlace

from . import charts
from .mcpclient import StdioRpc
from .progress import Progress
from .report import SuiteResult, Table, cell
from .sandboxkit import clean_state, image_cache_dir
from .sandboxkit.memory import descendants, tree_memory
from .stats import absent, ratio, summarise

MODES = {"full": (400, 8), "quick": (100, 3), "smoke": (5, 1)}  # calls, cold starts
MEMORY_INSTANCES = 3
RUNTIMES = ("runsc", "runc")
ENTRY = McpServerEntry("time", "mcp-server-time", ("--local-timezone", "UTC"),
                       image={"python": ["mcp-server-time"]})
CALL = ("get_current_time", {"timezone": "Europe/Paris"})
Opener = Callable[[str], contextlib.AbstractAsyncContextManager[tuple[StdioRpc, int]]]


def run(*, mode: str = "quick", progress: Progress) -> SuiteResult:
    calls, starts = MODES[mode]
    base = Path(tempfile.mkdtemp(prefix="ironclaw-bench-mcp-", dir="/var/tmp"))
    base.chmod(0o711)
    try:
        return trio.run(_run, base, mode, calls, starts, progress)
    finally:
        clean_state(base / "state")
        shutil.rmtree(base, ignore_errors=True)


async def _run(base: Path, mode: str, calls: int, starts: int,
               progress: Progress) -> SuiteResult:
    state = base / "state"
    state.mkdir(mode=0o711)
    with progress.phase("building the server image", total=1) as phase:
        image = await trio.to_thread.run_sync(lambda: ensure_server_image(
            state, ServerRecipe.from_table(ENTRY.name, ENTRY.image),
            cache_dir=image_cache_dir()))
        phase.advance()
    openers: dict[str, Opener] = {"direct": _direct_opener(base)}
    notes: list[str] = []
    for name in RUNTIMES:
        runtime = OciRuntime.find(RuntimeKind(name), state)
        if runtime is None:
            notes.append(f"{name} is not installed")
            continue
        openers[name] = _sandbox_opener(ServerSandboxes(runtime, state_dir=state), image,
                                        base)
    latency = await _latency(openers, calls, progress)
    cold = await _cold_starts(openers, starts, progress)
    memory = await _memory(openers, progress)
    results = {"call_latency": latency, "cold_start": cold}
    ratios = {f"{name}_call_p50_over_direct": ratio(latency.get(name), latency["direct"])
              for name in openers if name != "direct"}
    ratios.update({f"{name}_call_p99_over_direct": ratio(latency.get(name),
                                                         latency["direct"], key="p99")
                   for name in openers if name != "direct"})
    tables = [
        Table("Tool call over stdio (get_current_time), interleaved",
              ["variant", "p50", "p99", "n"],
              [[n, cell(e), cell(e, "p99"), str(e.get("n", ""))] for n, e in latency.items()]),
        Table("Cold start to initialize answered", ["variant", "median", "max"],
              [[n, cell(e), cell(e, "max")] for n, e in cold.items()]),
        Table("Memory (PSS of the instance's process tree)",
              ["variant", "one instance", f"each of {MEMORY_INSTANCES}"],
              [[n, f"{m['one']:.1f} MiB", f"{m['each']:.1f} MiB"]
               for n, m in memory.items()]),
    ]
    result = SuiteResult(
        suite="mcp", mode=mode,
        method={"server": "mcp-server-time (PyPI), image " + image.digest[:16],
                "calls_per_variant": calls, "cold_starts_per_variant": starts,
                "memory_instances": MEMORY_INSTANCES, "tool_call": CALL[0]},
        results=results, ratios=ratios, tables=tables, extra={"memory": memory},
        notes=notes)
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


def _direct_opener(base: Path) -> Opener:
    launcher = ProcessLauncher()

    @contextlib.asynccontextmanager
    async def open_direct(tag: str) -> AsyncIterator[tuple[StdioRpc, int]]:
        place = ServerPlace(f"bench-{tag}", "bench", base / "direct" / tag, None, None)
        place.workdir.mkdir(parents=True, exist_ok=True)
        async with launcher.open_server(ENTRY, place) as pipes:
            rpc = StdioRpc(pipes.send, pipes.receive)
            await rpc.initialize()
            yield rpc, 0
    return open_direct


def _sandbox_opener(sandboxes: ServerSandboxes, image: Any, base: Path) -> Opener:
    @contextlib.asynccontextmanager
    async def open_sandboxed(tag: str) -> AsyncIterator[tuple[StdioRpc, int]]:
        name = sandboxes.runtime.kind.value
        launch = ServerLaunch(ENTRY.name, f"bench-{name}-{tag}", image, ENTRY.command,
                              ENTRY.args, base / name / tag)
        async with sandboxes.open(launch) as pipes:
            rpc = StdioRpc(pipes.send, pipes.receive)
            await rpc.initialize()
            yield rpc, pipes.pid
    return open_sandboxed


async def _latency(openers: dict[str, Opener], calls: int,
                   progress: Progress) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[float]] = {name: [] for name in openers}
    async with contextlib.AsyncExitStack() as stack:
        rpcs = {name: (await stack.enter_async_context(open_("warm")))[0]
                for name, open_ in openers.items()}
        with progress.phase("tool calls, interleaved", total=calls) as phase:
            for _ in range(calls):
                for name, rpc in rpcs.items():
                    started = time.perf_counter()
                    result = await rpc.call(*CALL)
                    samples[name].append(time.perf_counter() - started)
                    if result.get("isError"):
                        raise RuntimeError(f"{name}: the tool call failed")
                phase.advance()
    return {name: summarise(values) for name, values in samples.items()}


async def _cold_starts(openers: dict[str, Opener], starts: int,
                       progress: Progress) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[float]] = {name: [] for name in openers}
    with progress.phase("cold starts", total=starts) as phase:
        for index in range(starts):
            for name, open_ in openers.items():
                started = time.perf_counter()
                async with open_(f"cold{index}"):
                    samples[name].append(time.perf_counter() - started)
            phase.advance()
    return {name: summarise(values) if values else absent("not run")
            for name, values in samples.items()}


async def _memory(openers: dict[str, Opener], progress: Progress
                  ) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with progress.phase("memory", total=len(openers)) as phase:
        for name, open_ in openers.items():
            async with contextlib.AsyncExitStack() as stack:
                first = (await stack.enter_async_context(open_("mem0")))[1]
                await trio.sleep(0.5)
                one = _pss([first])
                pids = [first, *[(await stack.enter_async_context(open_(f"mem{i}")))[1]
                                 for i in range(1, MEMORY_INSTANCES)]]
                await trio.sleep(0.5)
                each = _pss(pids) / MEMORY_INSTANCES
            out[name] = {"one": one, "each": each}
            phase.advance()
    return out


def _pss(roots: list[int]) -> float:
    """PSS (MiB) of the process trees at ``roots``. A root of 0 is a direct child of
    the ProcessLauncher, which does not name its pid: every server process among our
    own descendants is counted (the variants' memory is read one at a time)."""
    if 0 in roots:
        ours = [pid for pid in descendants(os.getpid())
                if ENTRY.command.encode() in _cmdline(pid)]
        return tree_memory({"tree": ours})["tree"]["pss_mib"]
    pids = sorted({pid for root in roots for pid in descendants(root)})
    return tree_memory({"tree": pids})["tree"]["pss_mib"]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    latency = payload["results"]["call_latency"]
    cold = payload["results"]["cold_start"]
    return {
        "latency": lambda path, sub: charts.grouped_bars(
            path, title="mcp: tool call latency over stdio, direct vs sandboxed",
            subtitle=sub, groups=["call"], variants=list(latency),
            data={"call": latency}, ylabel="milliseconds"),
        "cold-start": lambda path, sub: charts.grouped_bars(
            path, title="mcp: cold start to initialize", subtitle=sub,
            groups=["start"], variants=list(cold), data={"start": cold},
            ylabel="milliseconds"),
    }

