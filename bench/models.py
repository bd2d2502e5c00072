"""Real models: what the plane adds to a real model's reply, and what redaction costs.

- Reply latency, real local model against the mock, in one run under runsc: one control
  plane, two agents (the demo agent on the mock model, a second on SmolLM2-135M served
  by llama-cpp-python on loopback, ``bench/localmodel.py``), replies interleaved. The
  plane's share of a real reply is ``(reply - time upstream) / reply``, with the time
  upstream taken from the proxy's own ``model.call`` reports for that turn; the mock's
  reply is the plane's whole cost on the same path, for contrast.
- The redactor: throughput (MB/s) over the ordinary corpus (``bench/textcorpus.py``),
  whole and streamed in 4 KiB chunks; its false positives on that corpus and its misses
  on real-format keys, beside the false positives of the key pattern it replaced.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.host.modelproxy import Credentials, ModelCall, ProxyLimits, Secret
from ironclaw.host.modelproxy.redact import Redactor
from ironclaw.host.registry import AgentGroup, MessagingGroup, Persona, Wiring

from . import charts
from .localmodel import PLAIN, local_model_missing, open_local_model
from .progress import Progress
from .report import SuiteResult, Table, cell
from .sandboxkit import clean_state, image_cache_dir
from .stats import absent, failed, summarise
from .textcorpus import KEY_CONTEXTS, ordinary_corpus, real_format_keys

MODES = {"full": 8, "quick": 3, "smoke": 1}
LOCAL_CONVERSATION = "local-model"
# The pattern the redactor had before: no left boundary, so it matched inside words.
PREVIOUS_PATTERN = re.compile(rb"sk-ant-[A-Za-z0-9_\-]{20,512}|"
                              rb"sk-(?:proj-|or-v1-|svcacct-)?[A-Za-z0-9_\-]{20,512}")
# Short answers keep a 135M model's turn short; the tools are still in every prompt.
MAX_TOKENS = 48
LIFTED = ProxyLimits(rate=10_000.0, burst=10_000)


def run(*, mode: str = "quick", progress: Progress) -> SuiteResult:
    replies = MODES[mode]
    with progress.phase("redactor over the corpus", total=1) as phase:
        redaction = _redaction(mode)
        phase.advance()
    if mode == "smoke":
        why = ("--smoke leaves the real model out (its path is covered by "
               "tests/sandbox/test_real_model.py)")
        latency = {"replies": {"mock": skipped(why), "local": skipped(why)}, "reason": why}
    else:
        latency = _latency(replies, progress)
    results = {"redaction_throughput": redaction.pop("throughput"),
               "reply_latency": latency.pop("replies")}
    share = latency.get("plane_share")
    notes = [f"plane share of a real-model reply: {share:.2%}" if isinstance(share, float)
             else "plane share not measured: " + str(latency.get("reason", "?"))]
    table = Table("Redaction", ["measure", "value"], [
        ["corpus size", f"{redaction['corpus_mb']:.2f} MB"],
        ["false positives (this redactor)", str(redaction["false_positives"])],
        ["false positives (previous pattern)", str(redaction["previous_false_positives"])],
        ["misses on real-format keys", f"{redaction['misses']} of {redaction['keys']}"],
        ["throughput, whole", cell(results["redaction_throughput"].get("whole"))],
        ["throughput, 4 KiB stream", cell(results["redaction_throughput"].get("stream"))],
    ])
    replies_table = Table("Reply latency under runsc", ["agent", "median", "p90"], [
        [name, cell(entry), cell(entry, "p90")]
        for name, entry in results["reply_latency"].items()])
    result = SuiteResult(
        suite="models", mode=mode,
        method={"replies_per_agent": replies, "max_tokens": MAX_TOKENS,
                "local_model": "SmolLM2-135M-Instruct Q4_1 (llama-cpp-python server)",
                "runtime": "runsc", "redaction_chunk_bytes": 4096},
        results=results, ratios={"plane_share_of_real_reply": share if isinstance(
            share, float) else None, "local_over_mock_reply": latency.get("ratio")},
        tables=[table, replies_table], extra={"redaction": redaction, **latency},
        notes=notes, ratio_section=isinstance(share, float))
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    """The models charts, drawn from a saved result (``python -m bench render``)."""
    replies = payload["results"]["reply_latency"]
    throughput = payload["results"]["redaction_throughput"]
    return {
        "replies": lambda path, sub: charts.grouped_bars(
            path, title="models: reply latency under runsc, mock vs a real local model",
            subtitle=sub, groups=["reply"], variants=list(replies),
            data={"reply": replies}, ylabel="milliseconds"),
        "redaction": lambda path, sub: charts.grouped_bars(
            path, title="models: redactor throughput on ordinary text", subtitle=sub,
            groups=["throughput"], variants=list(throughput),
            data={"throughput": throughput}, ylabel="MB/s"),
    }


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


# -- the redactor ----------------------------------------------------------------------

def _redaction(mode: str) -> dict[str, Any]:
    corpus = [doc.encode() for doc in ordinary_corpus(
        stdlib_bytes=300_000 if mode == "smoke" else 2_000_000)]
    redactor = Redactor([Secret("sk-ant-api03-HOSTHELD" + "x7Y" * 30)])
    size = sum(map(len, corpus))
    whole, stream = [], []
    for _ in range(1 if mode == "smoke" else 3):
        start = time.perf_counter()
        for doc in corpus:
            redactor.redact(doc)
        whole.append(size / 1e6 / (time.perf_counter() - start))
        start = time.perf_counter()
        for doc in corpus:
            scrubber = redactor.stream()
            for i in range(0, len(doc), 4096):
                scrubber.feed(doc[i:i + 4096])
            scrubber.finish()
        stream.append(size / 1e6 / (time.perf_counter() - start))
    keys = real_format_keys()
    misses = sum(redactor.redact(ctx.format(key=key).encode())[1] != 1
                 for key in keys for ctx in KEY_CONTEXTS)
    return {
        "throughput": {"whole": summarise(whole, unit="MB/s", scale=1.0),
                       "stream": summarise(stream, unit="MB/s", scale=1.0)},
        "corpus_mb": size / 1e6, "documents": len(corpus),
        "false_positives": sum(redactor.redact(doc)[1] for doc in corpus),
        "previous_false_positives": sum(len(PREVIOUS_PATTERN.findall(doc))
                                        for doc in corpus),
        "misses": misses, "keys": len(keys) * len(KEY_CONTEXTS)}


# -- reply latency ---------------------------------------------------------------------

@attrs.define
class _Calls:
    seen: list[ModelCall] = attrs.Factory(list)


def _latency(replies: int, progress: Progress) -> dict[str, Any]:
    missing = local_model_missing()
    root = Path(tempfile.mkdtemp(prefix="ironclaw-bench-m-", dir="/var/tmp"))
    root.chmod(0o711)
    try:
        if missing is None and OciRuntime.find(RuntimeKind.RUNSC, root / "state") is None:
            missing = "runsc is not installed (or this is not root)"
        if missing is not None:
            return {"replies": {"mock": absent(missing), "local": absent(missing)},
                    "reason": missing}
        return trio.run(_measure, root, replies, progress)
    except Exception as exc:  # a failed measure is reported, never a number
        reason = f"{type(exc).__name__}: {exc}"[:300]
        return {"replies": {"mock": failed(reason), "local": failed(reason)},
                "reason": reason}
    finally:
        clean_state(root / "state")
        shutil.rmtree(root, ignore_errors=True)


async def _measure(root: Path, replies: int, progress: Progress) -> dict[str, Any]:
    config = ControlPlaneConfig(state_dir=root / "state", dev=True, runtime="runsc",
                                key_dir=root / "keys", idle_timeout_s=3600,
                                model_limits=LIFTED, image_cache_dir=image_cache_dir())
    samples: dict[str, list[float]] = {"mock": [], "local": []}
    shares: list[float] = []
    calls = _Calls()
    async with open_local_model() as url, trio.open_nursery() as nursery:
        plane: ControlPlaneHandles = await nursery.start(ControlPlane(
            config, credentials=Credentials(local_url=url, local_max_tokens=MAX_TOKENS)).run)
        nursery.start_soon(_record, plane, calls)
        await _add_local_agent(plane)
        with progress.phase("replies: mock and local model, interleaved",
                            total=2 * (replies + 1)) as phase:
            for index in range(replies + 1):  # the first of each starts its sandbox
                for name, conversation in (("mock", DEMO_CONVERSATION),
                                           ("local", LOCAL_CONVERSATION)):
                    mark = len(calls.seen)
                    elapsed = await _reply(plane, conversation, f"Say hi, {index}.")
                    upstream = sum(c.duration_ms for c in calls.seen[mark:]) / 1000
                    if index:
                        samples[name].append(elapsed)
                        if name == "local":
                            shares.append(max(0.0, elapsed - upstream) / elapsed)
                    phase.advance()
        nursery.cancel_scope.cancel()
    mock, local = summarise(samples["mock"]), summarise(samples["local"])
    return {"replies": {"mock": mock, "local": local},
            "plane_share": sorted(shares)[len(shares) // 2],
            "ratio": local["median"] / mock["median"]}


async def _record(plane: ControlPlaneHandles, calls: _Calls) -> None:
    async with plane.events.subscribe("model.call") as subscription:
        async for item in subscription:
            event = getattr(item, "event", None)
            if isinstance(event, ModelCall):
                calls.seen.append(event)


async def _add_local_agent(plane: ControlPlaneHandles) -> None:
    registry = plane.registry
    await registry.put_agent_group(AgentGroup(
        id="local", name="Local", folder="local", provider="local", model=PLAIN,
        persona=Persona(identity="You are brief.", instructions="Answer in a few words.")))
    group = await registry.ensure_messaging_group("local", LOCAL_CONVERSATION)
    await registry.put_messaging_group(MessagingGroup(
        id=group.id, channel=group.channel, platform_id=group.platform_id,
        instance=group.instance, unknown_sender_policy=UnknownSenderPolicy.PUBLIC,
        name="Local model", created_at=group.created_at))
    await registry.put_wiring(Wiring(id="bench-local", messaging_group_id=group.id,
                                     agent_group_id="local",
                                     engage_mode=EngageMode.PATTERN, pattern="."))


async def _reply(plane: ControlPlaneHandles, conversation: str, text: str) -> float:
    mark = plane.local.cursor(conversation)
    start = time.perf_counter()
    await plane.local.post(conversation, "operator", text)
    with trio.fail_after(300):
        await plane.local.wait_for_reply(conversation, after_index=mark)
    return time.perf_counter() - start
