"""Running one ironctl command: parse, connect, dispatch, map failures to exit codes."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

import httpx
import trio

from .client import (
    DEFAULT_ADDR,
    ENV_ADDR,
    ENV_TOKEN,
    FAILED,
    OK,
    USAGE,
    Api,
    ApiFailure,
    CliError,
    Target,
    UsageError,
    check_token,
    read_token_file,
)
from .context import Ctx
from .output import Console
from .parser import build_parser

INTERRUPTED = 130


def argv_secrets(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Token values that may be in the arguments, to redact from usage messages."""
    found = [env.get(ENV_TOKEN) or ""]
    for i, arg in enumerate(argv):
        if arg == "--token" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--token="):
            found.append(arg.partition("=")[2])
    return [s for s in found if len(s) >= 8]


def parse(argv: Sequence[str], out: TextIO, err: TextIO, secrets: Sequence[str] = ()
          ) -> tuple[argparse.Namespace | None, int]:
    """The parsed arguments, or None and the exit code (help, or a usage error)."""
    parser = build_parser()
    buffer_out, buffer_err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer_out), contextlib.redirect_stderr(buffer_err):
            args = parser.parse_args(list(argv))
    except SystemExit as exc:
        console = Console(out, err, secrets=secrets)
        console.raw(buffer_out.getvalue())
        err.write(console.redact(buffer_err.getvalue()))
        code = exc.code if isinstance(exc.code, int) else USAGE
        return None, code
    if args.handler is None:
        args.usage_of.print_help(err)
        return None, USAGE
    return args, OK


def resolve_token(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    if args.token is not None and args.token_file is not None:
        raise UsageError("give --token or --token-file, not both")
    if args.token_file is not None:
        return check_token(read_token_file(args.token_file))
    if args.token is not None:
        return check_token(args.token)
    return check_token(env.get(ENV_TOKEN))


async def run(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
              stdin: TextIO | None = None, stdout: TextIO | None = None,
              stderr: TextIO | None = None,
              transport: httpx.AsyncBaseTransport | None = None) -> int:
    """Run one command inside an existing Trio run; returns the exit code."""
    env = os.environ if env is None else env
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    argv = sys.argv[1:] if argv is None else argv
    args, code = parse(argv, out, err, argv_secrets(argv, env))
    if args is None:
        return code
    console = Console(out, err, json_mode=args.json)
    try:
        token = resolve_token(args, env)
        console.add_secret(token)
        target = Target.parse(args.addr or env.get(ENV_ADDR) or DEFAULT_ADDR)
    except CliError as exc:
        return report(console, exc)
    if token and target.scheme == "http" and not target.loopback:
        console.note(f"ironctl: warning: sending the token over plain HTTP to "
                     f"{target.host}; use https or a tailnet address")
    api = Api(target, token, timeout=args.timeout, transport=transport)
    ctx = Ctx(args=args, console=console, api=api, target=target, token=token, env=env,
              stdin=sys.stdin if stdin is None else stdin)
    try:
        result: int = await args.handler(ctx)
        return result
    except CliError as exc:
        return report(console, exc)
    finally:
        with trio.CancelScope(shield=True):
            await api.aclose()


def report(console: Console, exc: CliError) -> int:
    if console.json_mode and isinstance(exc, ApiFailure):
        console.note(console.redact(_json_line(exc.as_json())))
    else:
        console.note(f"ironctl: {exc.message}")
    return exc.code


def _json_line(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ironctl`` console script."""
    try:
        return trio.run(run, argv)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``ironctl audit export | head``): stop quietly.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return FAILED

