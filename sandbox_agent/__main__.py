"""``python -m sandbox_agent --config PATH``: the program inside the sandbox.

Exit codes: 0 after a signal-driven shutdown (or a warm sandbox released unclaimed), 2
for a bad config or key file, 3 when the queues cannot be used (wrong key, foreign
schema). Errors are one line on stderr. ``--await-claim`` makes a warm sandbox: every
import is done, then the agent waits on ``claim.sock`` before it reads anything of a
session (``startup.await_claim``).
``--self-check`` reads no config: it proves the build can import and run everything
(see ``selfcheck``), prints one JSON line of versions and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from ironclaw.contract.agent_config import SANDBOX_CONFIG_FILE
from ironclaw.contract.layout import CLAIM_SOCKET, SANDBOX_SOCKET_DIR

from . import selfcheck, workloads
from .agent import find_fatal, serve_agent
from .startup import (
    NeverClaimed,
    StartupError,
    await_claim,
    load_config,
    load_keys,
    prewarm,
)

EXIT_BAD_STARTUP = 2
EXIT_QUEUE_FATAL = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sandbox_agent", description="The IronClaw agent that runs in the sandbox.")
    parser.add_argument("--config", type=Path, default=SANDBOX_CONFIG_FILE,
                        help=f"agent config file (default {SANDBOX_CONFIG_FILE})")
    parser.add_argument("--await-claim", action="store_true",
                        help="a warm sandbox: wait for the host's claim before reading "
                             "the config")
    parser.add_argument("--self-check", action="store_true",
                        help="check this build's imports, Trio and SQLCipher; print "
                             "versions as JSON and exit")
    # Benchmark workloads (bench sandbox): hidden, they read no config, key or queue.
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.self_check:
        return selfcheck.main()
    if args.workload is not None:
        return workloads.main(args.workload, args.iterations, args.seconds)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="sandbox_agent %(levelname)s %(name)s: %(message)s")
    try:
        if args.await_claim:
            prewarm(Path("/tmp"))
            await_claim(SANDBOX_SOCKET_DIR / CLAIM_SOCKET)
        config = load_config(args.config)
        keys = load_keys(config.key_file)
    except NeverClaimed:
        return 0
    except StartupError as exc:
        print(f"sandbox_agent: {exc}", file=sys.stderr)
        return EXIT_BAD_STARTUP
    try:
        trio.run(serve_agent, config, keys)
    except BaseException as exc:
        fatal = find_fatal(exc)
        if fatal is None:
            raise
        print(f"sandbox_agent: cannot use the queues: {fatal}", file=sys.stderr)
        return EXIT_QUEUE_FATAL
    return 0


if __name__ == "__main__":
    sys.exit(main())
