"""``ironclaw-controlplane rotate-master``: a new master key, with the plane stopped.

Every session secret and the root secret are re-sealed under the new master in the key
store's three crash-safe steps (``KeyStore.rotate_master``): a crash at any point leaves
a pair of masters that the next open resolves. Purpose sub-keys derive from the root
secret, so host.db, the audit chain and the API's token hashes are untouched. The
command holds the state directory's lock, so it refuses to run beside a live plane, and
it appends ``keys.master_rotated`` (the old and new fingerprints) to the audit log.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from ironclaw.cli.daemon_settings import state_dir_from
from ironclaw.host.audit import open_audit_log
from ironclaw.host.config.file import load_config_file
from ironclaw.host.config.statedir_lock import StateDirInUse, hold_state_dir
from ironclaw.host.keys import FileMasterKeySource, KeyCustodyError, KeyStore, Purpose


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ironclaw-controlplane rotate-master",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, metavar="FILE")
    parser.add_argument("--state-dir", type=Path, default=None)
    return parser


async def rotate(state: Path) -> dict[str, str]:
    """Rotate the master of ``state``; the old and new fingerprints."""
    if not (state / "keys").is_dir():
        raise KeyCustodyError(f"{state} has no key store (run init first)")
    with hold_state_dir(state, what="rotate-master"):
        keystore = await trio.to_thread.run_sync(
            KeyStore.open, state, FileMasterKeySource.in_state_dir(state))
        try:
            old = keystore.master_fingerprint
            new = await trio.to_thread.run_sync(keystore.rotate_master)
            async with open_audit_log(state, keystore.subkey(Purpose.AUDIT_CHAIN)) as audit:
                await audit.append("keys.master_rotated", old_fingerprint=old,
                                   new_fingerprint=new)
        finally:
            keystore.close()
    return {"old_fingerprint": old, "new_fingerprint": new}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        from_file = load_config_file(args.config) if args.config is not None else {}
        state = state_dir_from(args, from_file).resolve()
        report = trio.run(rotate, state)
    except StateDirInUse as exc:
        print(f"ironclaw-controlplane rotate-master: {exc}", file=sys.stderr)
        return 3
    except (OSError, ValueError, KeyCustodyError) as exc:
        print(f"ironclaw-controlplane rotate-master: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0
