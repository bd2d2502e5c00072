"""ironctl's command line. Global options may come before or after the command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ironclaw.contract.enums import ChangeKind

from . import (
    agents,
    audit,
    changes,
    chat,
    connect,
    events,
    health,
    mcp,
    owners,
    principals,
    quarantine,
    redteam,
    tasks,
    views,
)
from .client import DEFAULT_ADDR, ENV_ADDR, ENV_TOKEN
from .templates import TEMPLATES

CHANGE_KINDS = tuple(kind.value for kind in ChangeKind)
CHANGE_STATUSES = ("pending", "approved", "rejected", "applied", "expired")

EPILOG = f"""\
environment:
  {ENV_ADDR}    the API address (default {DEFAULT_ADDR})
  {ENV_TOKEN}   the bearer token (preferred over --token, which other users
                        of this machine can see in the process list)

exit codes: 0 ok, 1 error or failed check, 2 usage, 3 auth (401/403),
            4 not found, 5 conflict (already decided)
"""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Below the top level the defaults are SUPPRESS, so an option given after the
    # command overrides the one before it and an absent one leaves it alone.
    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--addr", default=default(None),
                        help=f"API address (env {ENV_ADDR}; default {DEFAULT_ADDR})")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", default=default(None),
                       help=f"bearer token (env {ENV_TOKEN}); never printed")
    token.add_argument("--token-file", default=default(None),
                       help="read the bearer token from this file")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="machine-readable output")
    parser.add_argument("--timeout", type=positive_float, default=default(10.0),
                        help="seconds to wait for the API (default 10)")


Handler = Callable[[Any], Any]


class Builder:
    def __init__(self) -> None:
        self.common = argparse.ArgumentParser(add_help=False)
        _globals(self.common, top=False)

    def leaf(self, subparsers: Any, name: str, handler: Handler, help_text: str,
             **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(
            name, help=help_text, description=help_text, parents=[self.common], **kwargs)
        parser.set_defaults(handler=handler)
        return parser

    @staticmethod
    def group(subparsers: Any, name: str, help_text: str) -> Any:
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(handler=None, usage_of=parser)
        return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ironctl", description="Drive and watch an IronClaw control plane.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _globals(parser, top=True)
    parser.set_defaults(handler=None, usage_of=parser)
    b = Builder()
    top = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub = b.group(top, "change", "capability changes: submit, list, show, decide")
    p = b.leaf(sub, "submit", changes.cmd_submit, "submit a change for approval")
    p.add_argument("--kind", required=True, choices=CHANGE_KINDS)
    p.add_argument("--group", required=True, help="the agent group it is about")
    p.add_argument("--payload", required=True,
                   help="the change's JSON payload, or @file, or @- for stdin")
    p.add_argument("--reason")
    p.add_argument("--ttl", type=positive_float, help="expire after SECONDS")
    p = b.leaf(sub, "pending", changes.cmd_pending, "changes waiting for a decision")
    p.add_argument("--limit", type=positive_int, default=100)
    p = b.leaf(sub, "history", changes.cmd_history, "all changes, newest first")
    p.add_argument("--limit", type=positive_int, default=100)
    p.add_argument("--status", choices=CHANGE_STATUSES)
    p = b.leaf(sub, "show", changes.cmd_show, "one change, with a readable diff")
    p.add_argument("id")
    p.add_argument("--full", action="store_true", help="do not shorten long values")
    for name, handler in (("approve", changes.cmd_approve), ("reject", changes.cmd_reject)):
        p = b.leaf(sub, name, handler, f"{name} a pending change")
        p.add_argument("id")
        p.add_argument("--reason")

    sub = b.group(top, "audit", "the tamper-evident audit log")
    p = b.leaf(sub, "tail", audit.cmd_tail, "the latest entries")
    p.add_argument("--limit", type=positive_int, default=20)
    b.leaf(sub, "verify", audit.cmd_verify, "check the hash chain (exit 1 if broken)")
    p = b.leaf(sub, "export", audit.cmd_export, "stream the log as NDJSON to stdout")
    p.add_argument("--after", type=non_negative_int, default=0, metavar="SEQ",
                   help="only entries after this sequence number")

    sub = b.group(top, "agent", "agent groups")
    p = b.leaf(sub, "create", agents.cmd_create,
               "submit a create_agent change (and, with --approve, approve it)")
    p.add_argument("name")
    p.add_argument("--folder", required=True, help="the new group's folder (and id)")
    p.add_argument("--template", choices=sorted(TEMPLATES))
    for doc in agents.PERSONA_DOCS:
        p.add_argument(f"--{doc}", metavar="TEXT|@FILE", help=f"the {doc} document")
    p.add_argument("--provider")
    p.add_argument("--model")
    p.add_argument("--tool", action="append", metavar="TOOL", help="enable a tool "
                   "(repeatable)")
    p.add_argument("--reason")
    p.add_argument("--ttl", type=positive_float, help="expire after SECONDS")
    p.add_argument("--approve", action="store_true",
                   help="then approve it yourself (a second, separately audited act)")
    p = b.leaf(sub, "templates", agents.cmd_templates, "built-in persona templates")
    p.add_argument("template_name", nargs="?", metavar="TEMPLATE",
                   help="show this template's documents")
    b.leaf(sub, "list", agents.cmd_list, "list agent groups")
    p = b.leaf(sub, "show", agents.cmd_show, "one agent group, with its persona")
    p.add_argument("id")

    p = b.leaf(top, "connect", connect.cmd_connect,
               "connect a chat to an agent group: one change (create the chat if it "
               "never wrote, wire it, grant members, set its policy), approved once")
    p.add_argument("channel", metavar="CHANNEL[:INSTANCE]",
                   help="the chat's channel, e.g. webhook, or telegram:support")
    p.add_argument("chat", metavar="CHAT",
                   help="the chat's id on its platform (a webhook's `chat` value)")
    p.add_argument("--agent", required=True, metavar="GROUP", help="the agent group")
    p.add_argument("--engage", choices=connect.ENGAGE_MODES,
                   help="when the agent answers (default: every message)")
    p.add_argument("--pattern", metavar="RE", help="with --engage pattern: an RE2 pattern")
    p.add_argument("--members", metavar="A,B",
                   help="senders to make members of the group: handles on the channel")
    p.add_argument("--policy", choices=connect.POLICIES,
                   help="what the chat does with unknown senders (default: keep; a new "
                        "chat is strict)")
    p.add_argument("--reason")
    p.add_argument("--ttl", type=positive_float, help="expire after SECONDS")
    sub = b.group(top, "mcp", "MCP servers the host offers, and the groups granted them")
    b.leaf(sub, "list", mcp.cmd_list, "the catalogue, with each server's grants")
    p = b.leaf(sub, "show", mcp.cmd_show, "one server, with the groups granted it")
    p.add_argument("name")

    p = b.leaf(top, "registry", views.cmd_registry, "registry resources (read-only)")
    p.add_argument("resource", choices=(*views.REGISTRY, "destinations"))
    p.add_argument("group", nargs="?", help="the agent group (for destinations)")

    p = b.leaf(top, "sessions", views.cmd_sessions,
               "sessions (or one, by id); 'sessions rotate-key ID' gives a session new "
               "queue keys (needs an owner or admin token; audited)")
    p.add_argument("id", nargs="?", metavar="ID|rotate-key")
    p.add_argument("target", nargs="?", metavar="ID", help="with rotate-key: the session")
    p.add_argument("--live", action="store_true", help="only sessions with a live sandbox")
    p.add_argument("--delete", action="store_true",
                   help="delete session ID: its queues, key, tasks and records (needs an "
                        "owner or admin token; audited)")
    p.add_argument("--workspace", action="store_true",
                   help="with --delete: also empty its agent group's workspace (refused "
                        "while the group has another session)")

    p = b.leaf(top, "questions", views.cmd_questions, "pending questions from agents")
    p.add_argument("--session", help="only this session's")
    p.add_argument("--limit", type=positive_int, default=100)
    qsub = p.add_subparsers(dest="questions_command", metavar="COMMAND")
    q = b.leaf(qsub, "answer", views.cmd_question_answer, "answer a question")
    q.add_argument("id")
    q.add_argument("text", metavar="TEXT|@FILE")
    q = b.leaf(qsub, "show", views.cmd_question_show, "one question")
    q.add_argument("id")

    p = b.leaf(top, "access", views.cmd_access, "access requests from unknown senders")
    p.add_argument("--status", choices=("pending", "granted", "denied"))

    sub = b.group(top, "owners", "owners (registry users with the owner role)")
    csub = b.group(sub, "chat-approvals",
                   "deciding changes from a direct chat with the bot: off by default, "
                   "per owner; a chat account is a weaker credential than an API token")
    b.leaf(csub, "list", owners.cmd_list, "owners who may decide changes from chat")
    for name, handler, text in (
            ("enable", owners.cmd_enable, "let an owner decide changes from a direct chat"),
            ("disable", owners.cmd_disable, "stop an owner deciding changes from chat")):
        p = b.leaf(csub, name, handler, f"{text} (needs an owner token)")
        p.add_argument("user", metavar="USER",
                       help="the owner's registry user id, <channel>:<platform sender "
                            "id>, e.g. telegram:12345")

    sub = b.group(top, "principals", "the team's API tokens (needs an owner token; audited)")
    b.leaf(sub, "list", principals.cmd_list, "every principal, revoked ones included")
    p = b.leaf(sub, "add", principals.cmd_add,
               "add a principal and print its token, once")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--roles", required=True, metavar="ROLE[,ROLE]",
                   help="admin, approver and/or viewer, comma-separated")
    p.add_argument("--agent-groups", metavar="GROUP[,GROUP]",
                   help="limit it to these agent groups' changes (default: every group)")
    p = b.leaf(sub, "revoke", principals.cmd_revoke,
               "revoke a principal for good (its name stays taken)")
    p.add_argument("name", metavar="NAME")
    p = b.leaf(sub, "rotate", principals.cmd_rotate,
               "give a principal a new token (printed once); the old one stops working")
    p.add_argument("name", metavar="NAME")

    sub = b.group(top, "tasks", "scheduled tasks of every session")
    p = b.leaf(sub, "list", tasks.cmd_list, "tasks, soonest first (default: active and "
               "paused)")
    p.add_argument("--status", choices=tasks.STATUSES)
    p.add_argument("--session", help="only this session's")
    p.add_argument("--limit", type=positive_int, default=100)
    for name, handler, text in (
            ("pause", tasks.cmd_pause, "pause a task (it keeps its place)"),
            ("resume", tasks.cmd_resume, "resume a paused task"),
            ("cancel", tasks.cmd_cancel, "cancel a task for good")):
        p = b.leaf(sub, name, handler, f"{text} (needs an owner or admin token; audited)")
        p.add_argument("task", metavar="TASK", help="the task's id")

    sub = b.group(top, "quarantine", "sessions held because their sandbox proved hostile")
    b.leaf(sub, "list", quarantine.cmd_list, "the sessions held, and why")
    p = b.leaf(sub, "lift", quarantine.cmd_lift,
               "let a held session run again (needs an owner token; audited)")
    p.add_argument("session", metavar="SESSION", help="the quarantined session's id")

    p = b.leaf(top, "events", events.cmd_events, "live tail of the event stream")
    p.add_argument("--type", action="append", metavar="PATTERN",
                   help="'*', 'prefix.*' or an exact type (repeatable)")
    p.add_argument("--session", help="only events of this session")
    p.add_argument("--since", type=non_negative_int, metavar="SEQ",
                   help="first replay the retained events after SEQ")
    p.add_argument("--count", type=positive_int, help="stop after N events")
    p.add_argument("--no-follow", action="store_true",
                   help="stop once caught up instead of following")
    p.add_argument("--idle", type=positive_float, default=1.0, help="with --no-follow: "
                   "how long a quiet stream counts as caught up (default 1 s)")

    p = b.leaf(top, "chat", chat.cmd_chat, "talk to an agent over the local channel")
    p.add_argument("--group", default="demo", help="the agent group (default demo)")
    p.add_argument("--sender", help="your chat handle (default: your principal name)")
    p.add_argument("--conversation", help="a local conversation wired to the group")
    p.add_argument("--reply-timeout", type=positive_float, default=120.0,
                   help="seconds to wait for each reply (default 120)")
    p.add_argument("--poll", action="store_true",
                   help="use HTTP polling instead of the chat websocket")

    b.leaf(top, "status", health.cmd_status, "health, readiness and counts")

    # Not a leaf with the common options: it talks to no API, and its --json takes
    # the report's path (``ironctl --json redteam`` still prints JSON).
    about = ("attack a live sandbox from inside (local, as root); exit 0 only if every "
             "probe is contained")
    p = top.add_parser("redteam", help=about, description=about)
    p.set_defaults(handler=redteam.cmd_redteam)
    p.add_argument("--runtime", default="auto", choices=("auto", "runsc", "runc", "crun"),
                   help="the runtime to attack (default: the strongest present)")
    p.add_argument("--json", dest="json_report", metavar="PATH",
                   help="also write the full report (runtime, version, kernel, image "
                        "digest, every observation) to PATH")
    p.add_argument("--sessions", type=positive_int, default=1,
                   help="sandboxes to attack at once (default 1)")
    p.add_argument("--pool", action="store_true",
                   help="wall family, runsc: the sessions run on claimed warm sandboxes "
                        "(the warm pool), and a waiting one is probed as well")
    p.add_argument("--family", choices=("wall", "host"), default="wall",
                   help="wall: the sandbox's way out (default); host: the agent attacks "
                        "the host's readers, sockets and disk while a bystander is timed")
    p.add_argument("--full", action="store_true",
                   help="host family: every probe, with a longer hold (default: the short "
                        "form)")
    p.add_argument("--weaken", metavar="KIND",
                   help="negative control: weaken a defence on purpose (wall: network, "
                        "writable-rootfs, state-dir; host: untrusted-reads, schema-check, "
                        "socket-families, memfd-exec, disk-cap); the verdict must turn red")
    p = b.leaf(top, "doctor", health.cmd_doctor, "check this setup (exit 1 on any FAIL)")
    p.add_argument("--state-dir", help="also check this state directory's permissions")
    p.add_argument("--config", metavar="FILE",
                   help="also check the daemon's config file and each channel's settings "
                        "(locally: no platform is contacted)")
    return parser
