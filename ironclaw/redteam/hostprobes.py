"""The second family's probes: what a compromised agent does to the host's readers.

Each probe is one command run inside an attacked session's sandbox, as its uid, for a
fixed hold; the harness (:mod:`.hostattack`) measures the host meanwhile. A probe
names the defence that must hold it, so that ``--weaken`` can show the probe turning
red without it.
"""

from __future__ import annotations

import attrs

from .toolkit import HOSTILE_DB, TOOLKIT_MOUNT

__all__ = ["HostProbe", "host_probe_plan", "progress_path"]

PROBE = str(TOOLKIT_MOUNT / "ironclaw-probe")
BUSYBOX = str(TOOLKIT_MOUNT / "busybox")
OUTBOUND = "/queue/outbound"
SOCKETS = "/run/ironclaw/sock"
# What the host opens under the sandbox-writable outbound directory.
PLANT_TARGETS = {"heartbeat": f"{OUTBOUND}/heartbeat",
                 "outbound_db": f"{OUTBOUND}/outbound.db",
                 "fence": f"{OUTBOUND}/outbound.db.fence",
                 "journal": f"{OUTBOUND}/outbound.db-journal"}
PLANT_KINDS = ("fifo", "symlink", "device")
PROGRESS_PREFIX = ".rt-progress-"
CONNECTIONS = 10_000
FLOOD_ROWS = 100_000
# A generated column this long makes a reader that evaluates it build this many bytes.
GENERATED_BYTES = 200_000_000
OVERSIZED_ROW_BYTES = 48_000_000
# Past this the disk-fill probe stops by itself and reports that nothing stopped it.
DISK_FILL_LIMIT_MB = 1024

MESSAGES_OUT_GENERATED = (
    "DROP TABLE messages_out; CREATE TABLE messages_out (id TEXT PRIMARY KEY, "
    "seq INTEGER NOT NULL UNIQUE, in_reply_to TEXT, timestamp INTEGER NOT NULL, "
    "deliver_after INTEGER, recurrence TEXT, kind TEXT NOT NULL, platform_id TEXT, "
    "channel_type TEXT, thread_id TEXT, destination TEXT, content TEXT GENERATED ALWAYS "
    f"AS (printf('%.*c', {GENERATED_BYTES}, 'x')) VIRTUAL); "
    "INSERT INTO messages_out (id, seq, timestamp, kind) "
    "VALUES ('rt-generated', 999999999, unixepoch() * 1000000, 'chat');")
MESSAGES_OUT_VIEW = (
    "DROP TABLE messages_out; CREATE VIEW messages_out AS WITH RECURSIVE n(i) AS "
    "(SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 20000000) SELECT 'rt-view-' || i AS id, "
    "999999999 + 2 * i AS seq, NULL AS in_reply_to, unixepoch() * 1000000 AS timestamp, "
    "NULL AS deliver_after, NULL AS recurrence, 'chat' AS kind, NULL AS platform_id, "
    "NULL AS channel_type, NULL AS thread_id, NULL AS destination, 'view' AS content "
    "FROM n;")
MESSAGES_OUT_VIRTUAL = (
    "DROP TABLE messages_out; CREATE VIRTUAL TABLE messages_out USING fts5(id, seq, "
    "in_reply_to, timestamp, deliver_after, recurrence, kind, platform_id, channel_type, "
    "thread_id, destination, content); INSERT INTO messages_out (id, seq, timestamp, "
    "kind, content) VALUES ('rt-virtual', 999999999, unixepoch() * 1000000, 'chat', "
    "'virtual');")
TRIGGER = ("CREATE TRIGGER rt_trigger AFTER INSERT ON messages_out BEGIN "
           "DELETE FROM processing_ack; END;")
EXTRA_TABLES = " ".join(
    f"CREATE TABLE rt_extra_{i} (x BLOB); INSERT INTO rt_extra_{i} VALUES "
    f"(randomblob(65536));" for i in range(32))
OVERSIZED_ROW = (
    "INSERT INTO messages_out (id, seq, timestamp, kind, content) VALUES ('rt-oversized', "
    f"999999999, unixepoch() * 1000000, 'chat', printf('%.*c', {OVERSIZED_ROW_BYTES}, 'x'));")
ROW_FLOOD = (
    f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT {FLOOD_ROWS}) "
    "INSERT INTO messages_out (id, seq, timestamp, kind, content) SELECT 'rt-flood-' || i, "
    "900000001 + 2 * i, unixepoch() * 1000000, 'chat', 'flood' FROM n;")


@attrs.frozen
class HostProbe:
    name: str
    argv: tuple[str, ...]  # run inside the sandbox, as the agent's uid
    defence: str  # which defence must hold it: "hostile-files" or "isolation"
    # A schema that is not the contract's must get the session quarantined; merely
    # failing to read it is not enough.
    needs_quarantine: bool = False
    quick: bool = False  # part of the short form (CI)
    # The probe keeps its tally in ``progress_path(name)`` (outbound, as the sandbox sees
    # it): a probe whose own syscalls may hang says what it did before it can.
    reports_progress: bool = False

    def script(self) -> str:
        """As one shell line for the sandbox's busybox (stdout to stderr: under runsc
        the harness reads the sandbox's stderr tail)."""
        import shlex

        return "exec 1>&2; exec " + shlex.join(self.argv)


def progress_path(name: str) -> str:
    """Where, in the sandbox's outbound directory, a probe keeps its running tally."""
    return f"{OUTBOUND}/{PROGRESS_PREFIX}{name}"


def _hostile_db(name: str, sql: str, hold_s: float, *, quarantine: bool,
                quick: bool = False) -> HostProbe:
    return HostProbe(name, (str(HOSTILE_DB), name, str(hold_s), sql), "hostile-files",
                     needs_quarantine=quarantine, quick=quick)


def baseline_probe(hold_s: float) -> HostProbe:
    """The same launch and hold, attacking nothing but spending the sandbox's whole CPU
    budget (a busy, honest agent): the bystander's baseline. A hostile session may
    exhaust its own budget; the baseline holds the host to what that costs."""
    return HostProbe("host.baseline", (PROBE, "spin", str(hold_s)), "none")


def host_probe_plan(hold_s: float) -> list[HostProbe]:
    quick_plants = {("heartbeat", "fifo"), ("outbound_db", "symlink"), ("fence", "fifo")}
    plan = [
        HostProbe(f"host.{target}.{kind}", (PROBE, "plant", kind, path, str(hold_s),
                                            f"host.{target}.{kind}"),
                  "hostile-files", quick=(target, kind) in quick_plants)
        for target, path in PLANT_TARGETS.items() for kind in PLANT_KINDS]
    plan += [
        HostProbe("host.fence.stuck_odd", (PROBE, "fence-odd", f"{OUTBOUND}/outbound.db.fence",
                                           str(hold_s)), "hostile-files", quick=True),
        HostProbe("host.inotify_storm", (PROBE, "inotify-storm", OUTBOUND, str(hold_s)),
                  "hostile-files"),
        _hostile_db("host.schema.generated_column", MESSAGES_OUT_GENERATED, hold_s,
                    quarantine=True, quick=True),
        _hostile_db("host.schema.trigger", TRIGGER, hold_s, quarantine=True),
        _hostile_db("host.schema.view", MESSAGES_OUT_VIEW, hold_s, quarantine=True),
        _hostile_db("host.schema.virtual_table", MESSAGES_OUT_VIRTUAL, hold_s,
                    quarantine=True),
        _hostile_db("host.schema.extra_tables", EXTRA_TABLES, hold_s, quarantine=True),
        _hostile_db("host.rows.oversized", OVERSIZED_ROW, hold_s, quarantine=False),
        _hostile_db("host.rows.flood_100k", ROW_FLOOD, hold_s, quarantine=False),
        HostProbe("host.disk_fill", (PROBE, "disk-fill", OUTBOUND, str(DISK_FILL_LIMIT_MB)),
                  "isolation"),
    ]
    plan += [
        HostProbe(f"host.connect_flood.{name.split('.')[0]}",
                  (PROBE, "connect-flood", f"{SOCKETS}/{name}", str(CONNECTIONS), str(hold_s),
                   f"host.connect_flood.{name.split('.')[0]}",
                   progress_path(f"host.connect_flood.{name.split('.')[0]}")),
                  "hostile-files", reports_progress=True)
        # Not in the short form (the suite's time): under runsc, once the host's
        # per-socket cap stops accepting, gVisor's connect to a host socket blocks for
        # good, signals included, so the attacker's sandbox outlives its report; the
        # probe writes its tally to a progress file first, and the harness reads that.
        for name in ("model.sock", "egress.sock", "wake.sock")]
    # The first family runs these too (probes.py), so they are left out of the short
    # form; here they run beside a timed bystander, and carry this family's negative
    # controls.
    plan += [
        HostProbe("socket.af_alg", (PROBE, "af-alg"), "isolation"),
        HostProbe("socket.af_vsock", (PROBE, "af-vsock"), "isolation"),
        HostProbe("memfd.exec", (PROBE, "memfd-exec"), "isolation"),
    ]
    return plan
