"""ironclaw-hostile-db: the red-team attacker's SQLCipher, run INSIDE a sandbox.

Frozen by the harness (PyInstaller, :func:`.toolkit.build_toolkit`) into the attacker's
toolkit, never into the agent's image: the production agent has no attack mode. It
does what a compromised agent can do with the key it is given: read
``/run/ironclaw/session.key`` as the agent does, and write whatever it likes into its
own ``outbound.db``.

    ironclaw-hostile-db PROBE SECONDS SQL

1. copies the session's ``outbound.db`` beside itself and runs ``SQL`` on the copy,
   with the session's outbound key (a schema change, a flood of rows, a huge row);
2. publishes the copy in place of the original and moves the commit fence to a new
   even value, so the host's reader takes it for a committed state and reads it;
3. for ``SECONDS``, nudges the fence again every half second, so the host reads it
   again and again (each read costs the host whatever the hostile file makes it cost);
4. puts the original back (an unquarantined session goes on as before).

It prints one JSON line, like ``ironclaw-probe``. Whether the host held is measured
outside; this line only says what was published.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import time
from pathlib import Path

import sqlcipher3

from ironclaw.contract.cipher import (
    CIPHER_COMPATIBILITY,
    SANDBOX_KEY_PATH,
    SessionKeys,
)

OUTBOUND = Path("/queue/outbound/outbound.db")
FENCE = OUTBOUND.with_name(OUTBOUND.name + ".fence")
# The fence's counter and its inverted copy (see ironclaw/contract/queue/fence.py).
COUNTER = struct.Struct("<QQ")
MASK = (1 << 64) - 1
NUDGE_S = 0.5


def _report(probe: str, contained: bool, observed: str) -> None:
    print(json.dumps({"probe": probe, "contained": contained, "observed": observed}),
          flush=True)


def _bump_fence() -> int:
    """Move the fence to the next even value: "a commit just ended"."""
    fd = os.open(FENCE, os.O_RDWR)
    try:
        value, _check = COUNTER.unpack(os.pread(fd, COUNTER.size, 0).ljust(COUNTER.size,
                                                                          b"\0"))
        even = (value | 1) + 1
        os.pwrite(fd, COUNTER.pack(even, even ^ MASK), 0)
        return int(even)
    finally:
        os.close(fd)


def _tamper(copy: Path, sql: str) -> None:
    keys = SessionKeys.parse_file(Path(SANDBOX_KEY_PATH).read_text())
    conn = sqlcipher3.connect(str(copy), isolation_level=None)
    try:
        conn.execute(keys.outbound.pragma())
        conn.execute(f"PRAGMA cipher_compatibility = {CIPHER_COMPATIBILITY}")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.executescript(sql)
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: ironclaw-hostile-db PROBE SECONDS SQL", file=sys.stderr)
        return 2
    probe, seconds, sql = argv[1], float(argv[2]), argv[3]
    work = OUTBOUND.with_name(".rt-hostile.db")
    aside = OUTBOUND.with_name(".rt-original.db")
    try:
        shutil.copyfile(OUTBOUND, work)
        started = time.monotonic()
        _tamper(work, sql)
        built_s = time.monotonic() - started
    except Exception as exc:  # the attack could not be built: say so, as red
        _report(probe, False, f"could not build the hostile file: {type(exc).__name__}: "
                f"{exc}"[:400])
        work.unlink(missing_ok=True)
        return 0
    size = work.stat().st_size
    os.link(OUTBOUND, aside)
    os.replace(work, OUTBOUND)
    fence = _bump_fence()
    nudges = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(NUDGE_S)
        _bump_fence()
        nudges += 1
    os.replace(aside, OUTBOUND)
    _bump_fence()
    _report(probe, True, f"published a hostile outbound.db of {size} bytes (built in "
            f"{built_s:.1f} s, fence {fence}), re-read {nudges} times, then restored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
