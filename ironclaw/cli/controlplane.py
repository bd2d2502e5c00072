"""``ironclaw-controlplane``: the control-plane daemon.

Subcommands: ``init`` prepares a production state directory (``ironclaw.cli.init``);
``build-sandbox`` builds and pins the sealed sandbox image (``ironclaw.cli.build_sandbox``);
``build-mcp-images`` builds and pins the MCP servers' images
(``ironclaw.cli.build_mcp_images``);
``backup`` and ``restore`` snapshot a state directory and put it back
(``ironclaw.cli.backup``); ``rotate-master`` replaces the master key with the plane
stopped (``ironclaw.cli.rotate_master``).

Without ``--dev`` it runs in production mode: no demo agent is seeded, and what runs
is what ``init`` and the gateway set up.

``--dev`` runs the whole tree with embedded defaults: loopback only, the demo agent on
the mock model, and a local conversation. When stdin is a terminal it also opens a
chat prompt on that conversation, so you can talk to the agent at once.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from ironclaw import __version__
from ironclaw.cli import backup, build_mcp_images, build_sandbox, init, rotate_master
from ironclaw.cli.daemon_settings import configure_logging, resolve
from ironclaw.host.api import ENV_TOKEN, ApiSettings, Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import RUNTIMES, ControlPlaneConfig, choose_runtime
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.config.file import LOG_FORMATS

logger = logging.getLogger("ironclaw")
PROMPT = "you> "


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ironclaw-controlplane", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true",
                        help="development mode: loopback, mock model, demo agent")
    parser.add_argument("--provider", default=None,
                        choices=("mock", "anthropic", "openai", "openrouter", "local"),
                        help="with --dev: the demo agent's model provider (default mock; "
                             "local needs IRONCLAW_LOCAL_MODEL_URL)")
    parser.add_argument("--model", default=None,
                        help="with --dev: the demo agent's model name")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="TOML config file (channels, runtime, ...); flags win over it")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where state lives (default: ./state with --dev, "
                             "/var/lib/ironclaw otherwise)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None,
                        help="sandbox runtime; auto picks the strongest available")
    parser.add_argument("--allow-insecure-runtime", action="store_true",
                        help="permit the 'process' runtime (no isolation) outside --dev")
    parser.add_argument("--api-addr", default=None, metavar="HOST:PORT",
                        help="where the HTTP API listens (default 127.0.0.1:8787, or the "
                             "config file's api_addr; port 0: any free port)")
    parser.add_argument("--api-allow-public", action="store_true",
                        help="permit a non-loopback --api-addr (it is plain HTTP: put it "
                             "behind a tailnet or a TLS proxy)")
    parser.add_argument("--no-api", action="store_true", help="do not serve the HTTP API")
    parser.add_argument("--no-chat", action="store_true",
                        help="do not open the chat prompt even on a terminal")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--log-format", default=None, choices=LOG_FORMATS,
                        help="text (default) or json: one JSON object per line, for "
                             "journald and log collectors (config: log_format)")
    parser.add_argument("--version", action="version", version=__version__)
    return parser


async def chat_prompt(handles: ControlPlaneHandles, sender: str = "operator") -> None:
    """A line-at-a-time chat with the demo agent over the local channel."""
    local = handles.local
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    print(f"Talk to the demo agent (conversation {DEMO_CONVERSATION!r}). "
          "Try 'hello', '/help', or 'tool:list_dir {}'. Ctrl-D or Ctrl-C to stop.")
    buffered = b""
    async with stdin:
        while True:
            print(PROMPT, end="", flush=True)
            while b"\n" not in buffered:
                chunk = await stdin.receive_some(4096)
                if not chunk:
                    print()
                    return
                buffered += chunk
            line, _, buffered = buffered.partition(b"\n")
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            mark = local.cursor(DEMO_CONVERSATION)
            await local.post(DEMO_CONVERSATION, sender, text)
            with trio.move_on_after(120) as scope:
                reply = await local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)
                print(f"agent> {reply.text}")
            if scope.cancelled_caught:
                print("agent> (no reply within 120 s; see the log)")


async def serve(config: ControlPlaneConfig, *, chat: bool, api: ApiSettings | None) -> None:
    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(ControlPlane(config).run)
        logger.info("control plane up: state %s, runtime %s%s", config.state_dir,
                    handles.runtime, " (dev)" if config.dev else "")
        if api is not None:
            principals = Principals(handles.store, handles.api_token_key,
                                    audit=handles.audit)
            minted = await bootstrap_owner(principals, env_token=os.environ.get(ENV_TOKEN))
            if minted:
                print(f"owner API token (shown once, keep it): {minted}", flush=True)
            binds = await nursery.start(functools.partial(
                serve_api, handles, api, token_key=handles.api_token_key))
            logger.info("API on %s", ", ".join(binds))

        async def on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    logger.info("%s received: shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(on_signal)
        if chat:
            await chat_prompt(handles)
            nursery.cancel_scope.cancel()


SUBCOMMANDS = {"build-sandbox": build_sandbox.main, "build-mcp-images": build_mcp_images.main,
               "init": init.main,
               "backup": backup.main_backup, "restore": backup.main_restore,
               "rotate-master": rotate_master.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in SUBCOMMANDS:
        # Subcommands have their own flags; every other invocation is the daemon's.
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = resolve(args)
        config, api = settings.config, settings.api
        choose_runtime(config.runtime)  # an absent runtime is a usage error, said now
    except ValueError as exc:
        print(f"ironclaw-controlplane: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, settings.log_format)
    chat = args.dev and not args.no_chat and sys.stdin.isatty()
    try:
        trio.run(functools.partial(serve, config, chat=chat, api=api))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # top level: one clear line per cause, details in the log
        logger.debug("fatal", exc_info=True)
        for leaf in _leaves(exc):
            print(f"ironclaw-controlplane: {type(leaf).__name__}: {leaf}", file=sys.stderr)
        return 1
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    """The causes inside (nested) exception groups, which nurseries wrap errors in."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


if __name__ == "__main__":
    sys.exit(main())
