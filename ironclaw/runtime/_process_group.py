"""Signalling a process group, and telling when it has really gone.

``kill(-pgid, 0)`` alone is not enough to know a group is gone: zombies still answer it,
and an orphaned member's zombie is only cleared when init reaps it, which a container's
pid 1 often never does. So once ``kill`` says someone answers, we look in ``/proc`` for a
member that is not a zombie.
"""

from __future__ import annotations

import os

import trio

_POLL_INTERVAL = 0.02
_DEAD_STATES = frozenset({b"Z", b"X", b"x"})


def signal_group(pgid: int, signum: int) -> None:
    """Signal every process in the group; a group that is already gone is fine."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        # Only possible when every remaining member belongs to another user, i.e. the
        # child changed identity; nothing we are allowed to do about it.
        pass


def _has_live_member(pgid: int) -> bool:
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # no procfs: trust kill(), which said someone is there
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue  # exited while we looked
        # The command name is in parentheses and may itself contain spaces or ')'.
        fields = stat[stat.rindex(b")") + 2 :].split()
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state not in _DEAD_STATES:
            return True
    return False


async def group_is_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return await trio.to_thread.run_sync(_has_live_member, pgid)


async def wait_until_group_gone(pgid: int) -> None:
    """Poll until the group has no live member; bound it with a cancel scope."""
    # Polling, because nothing notifies us when the last member of a group we do not
    # parent goes away.
    while await group_is_alive(pgid):  # noqa: ASYNC110
        await trio.sleep(_POLL_INTERVAL)
