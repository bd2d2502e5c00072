"""``ironclaw-controlplane init``: make a production state directory, or refuse.

It checks the setup before it writes anything, and refuses a weak one with a message
that says what to change: no OCI runtime (the agent would run with no isolation), a
state directory that other users can read, write or swap, or an API bound beyond
loopback without ``--api-allow-public``. Then it:

1. creates the state directory (0700);
2. creates the master key and the sealed key store (``keys/``, 0600 files);
3. opens host.db (running every migration) and the audit log, and makes the local
   conversation ``console`` (unwired: a wiring change at the gateway wires an agent);
4. mints the owner token and writes it, once, to a 0600 file (never to the terminal);
5. builds the sealed sandbox image and pins it (OCI runtimes only);
6. runs the doctor's local checks and prints them.

Running it again is safe: what exists is kept (the key, the token file, the pin of an
unchanged image), so an installer may call it on every run.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

import attrs
import trio

from ironclaw.cli.daemon_settings import DaemonSettings, resolve
from ironclaw.cli.ironctl.health import (
    FAIL,
    Check,
    channel_config_checks,
    credentials_check,
    runtime_check,
    state_dir_check,
)
from ironclaw.contract.enums import UnknownSenderPolicy
from ironclaw.host.api import ENV_TOKEN, Principals, bootstrap_owner
from ironclaw.host.audit import open_audit_log
from ironclaw.host.config import RUNTIMES, choose_runtime
from ironclaw.host.isolation.image import ImageError, build_image, pin_image
from ironclaw.host.keys import FileMasterKeySource, KeyStore, Purpose
from ironclaw.host.registry import MessagingGroup, Registry
from ironclaw.host.store import open_host_store

TOKEN_FILE_NAME = "owner.token"
CONSOLE_CONVERSATION = "console"


class WeakSetup(ValueError):
    """The setup ``init`` was asked to make is one it will not make; the message says
    what to change."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ironclaw-controlplane init", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="the daemon's TOML config file (state_dir, runtime, api_addr, ...)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where state lives (default: the config's state_dir, else "
                             "/var/lib/ironclaw)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None)
    parser.add_argument("--allow-insecure-runtime", action="store_true",
                        help="accept the 'process' runtime (NO isolation): for tests only")
    parser.add_argument("--api-addr", default=None, metavar="HOST:PORT")
    parser.add_argument("--api-allow-public", action="store_true",
                        help="accept a non-loopback API address")
    parser.add_argument("--token-file", type=Path, default=None,
                        help=f"where the owner token is written (default <state>/"
                             f"{TOKEN_FILE_NAME}); never overwritten")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where built sandbox images live (see build-sandbox)")
    return parser


def check_runtime(settings: DaemonSettings) -> str:
    config = settings.config
    runtime, _warning = choose_runtime(config.runtime)  # ValueError: named but absent
    if runtime == "process" and not config.allow_insecure_runtime:
        if config.runtime == "process":
            raise WeakSetup("runtime 'process' gives agents NO isolation; name runsc, runc "
                            "or crun (or --allow-insecure-runtime, for tests only)")
        raise WeakSetup(
            "no OCI runtime (runsc, runc or crun) is installed, so agents would run with "
            "NO isolation. Install gVisor (Debian: apt-get install runsc), or runc, and run "
            "init again. (--allow-insecure-runtime accepts 'process', for tests only.)")
    return runtime


def check_state_dir(path: Path) -> None:
    """Refuse a state directory (or a directory on its way) that another user could
    read, write, or replace: the master key and host.db would be theirs."""
    if path.is_symlink():
        raise WeakSetup(f"state directory {path} is a symlink; name the real directory")
    if path.exists():
        info = path.stat()
        if not stat.S_ISDIR(info.st_mode):
            raise WeakSetup(f"state directory {path} exists and is not a directory")
        if info.st_uid != os.geteuid():
            raise WeakSetup(f"state directory {path} belongs to uid {info.st_uid}, not to "
                            f"the daemon's user ({os.geteuid()})")
        mode = stat.S_IMODE(info.st_mode)
        # 0711 is what OCI runtimes need (enter, never list); read or write is not.
        if mode & 0o066:
            raise WeakSetup(f"state directory {path} has mode {mode:04o}, so other users "
                            f"can read or write it; chmod 0700 {path}")
    for parent in path.parents:
        if not parent.exists():
            continue
        info = parent.stat()
        sticky = bool(info.st_mode & stat.S_ISVTX)
        if info.st_uid not in (0, os.geteuid()):
            raise WeakSetup(f"{parent}, on the way to the state directory, belongs to uid "
                            f"{info.st_uid}: that user could replace the state directory")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            raise WeakSetup(f"{parent}, on the way to the state directory, is writable by "
                            "other users: they could replace the state directory")


async def _keys_store_owner(state: Path) -> str | None:
    """Key custody, host.db, the audit log and the owner. Returns a freshly minted
    owner token, or None when an owner already exists."""
    keystore = await trio.to_thread.run_sync(
        KeyStore.open, state, FileMasterKeySource.in_state_dir(state))
    try:
        async with open_host_store(state / "host.db", keystore.subkey(Purpose.HOST_DB)
                                   ) as store, \
                open_audit_log(state, keystore.subkey(Purpose.AUDIT_CHAIN)) as audit:
            principals = Principals(store, keystore.subkey(Purpose.API_TOKEN_HASH),
                                    audit=audit)
            minted = await bootstrap_owner(principals, env_token=os.environ.get(ENV_TOKEN))
            await ensure_console(Registry(store))
            await audit.append("plane.initialised", owner_minted=minted is not None)
    finally:
        keystore.close()
    return minted


async def ensure_console(registry: Registry) -> MessagingGroup:
    """The local conversation ``console``: where an operator talks to an agent through
    the API (``ironctl chat``) once a wiring change, approved at the gateway, wires one
    to it. Made public on creation: the local channel takes posts only from holders of
    an API token. Nothing is wired here; what an agent may do stays the gateway's."""
    existing = {(g.channel, g.platform_id) for g in await registry.list_messaging_groups()}
    group = await registry.ensure_messaging_group("local", CONSOLE_CONVERSATION)
    if ("local", CONSOLE_CONVERSATION) in existing:
        return group  # an operator may have changed it since; leave it be
    return await registry.put_messaging_group(attrs.evolve(
        group, unknown_sender_policy=UnknownSenderPolicy.PUBLIC, name="Operator console"))


def write_token_once(path: Path, token: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_EXCL: a token file is written once; an existing one (even a stale one) stays.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def doctor_checks(settings: DaemonSettings, config_file: Path | None) -> list[Check]:
    checks = [state_dir_check(settings.config.state_dir), runtime_check(os.environ),
              credentials_check(os.environ)]
    if config_file is not None:
        checks.extend(channel_config_checks(config_file))
    return checks


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = resolve(args)
        runtime = check_runtime(settings)
        check_state_dir(settings.named_state_dir)
        check_state_dir(settings.config.state_dir)
    except ValueError as exc:  # WeakSetup included
        print(f"ironclaw-controlplane init: refused: {exc}", file=sys.stderr)
        return 2
    state = settings.config.state_dir
    state.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    state.mkdir(mode=0o700, exist_ok=True)
    token_file = args.token_file or state / TOKEN_FILE_NAME
    print(f"state dir: {state}")
    try:
        minted = trio.run(_keys_store_owner, state)
    except Exception as exc:  # one clear line; a half-made state dir stays for inspection
        print(f"ironclaw-controlplane init: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if minted is not None:
        write_token_once(token_file, minted)
        print(f"owner token: written to {token_file} (0600); it is not shown anywhere else")
    else:
        print("owner token: kept (an owner already exists" + (
            f"; its token is in {token_file})" if token_file.exists() else ")"))
    if runtime != "process":
        cache = args.cache_dir or settings.config.image_cache_dir
        try:
            outcome = build_image(cache_dir=cache, progress=lambda line: print(line))
            pin_image(state, outcome.image)
        except (ImageError, OSError) as exc:
            print(f"ironclaw-controlplane init: sandbox image: {exc}", file=sys.stderr)
            return 1
        print(f"sandbox image: sha256:{outcome.image.digest} pinned for runtime {runtime}")
    checks = doctor_checks(settings, args.config)
    for check in checks:
        print(f"{check.status}  {check.name}  {check.detail}")
    if any(check.status == FAIL for check in checks):
        print("init: a check FAILED; fix it and run init again", file=sys.stderr)
        return 1
    print("init: done; start the daemon with the same --config / --state-dir")
    return 0
