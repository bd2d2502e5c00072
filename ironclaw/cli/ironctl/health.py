"""``ironctl status`` (probes and counts) and ``ironctl doctor`` (PASS/WARN/FAIL
checks, non-zero exit on any FAIL)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .client import ENV_TOKEN, FAILED, OK, ApiFailure, CliError
from .context import Ctx

RUNTIMES = ("runsc", "runc", "crun")
# Names only: a value is never read beyond "is it set".
MODEL_CREDENTIALS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY",
                     "IRONCLAW_LOCAL_MODEL_URL")
PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
PENDING_LIMIT = 1000  # the API's largest page


async def _probe(ctx: Ctx, url: str) -> tuple[int, Any]:
    response = await ctx.api.request("GET", url)
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def _failing(ready: Any) -> list[str]:
    checks = ready.get("checks") if isinstance(ready, dict) else None
    if not isinstance(checks, dict):
        return []
    found = []
    for name, check in checks.items():
        if isinstance(check, dict) and not check.get("ok"):
            detail = check.get("detail")
            found.append(f"{name} ({detail})" if detail else str(name))
    return found


async def cmd_status(ctx: Ctx) -> int:
    health_code, health = await _probe(ctx, "/healthz")
    ready_code, ready = await _probe(ctx, "/readyz")
    who = await ctx.api.get("/v1/whoami")
    sessions = (await ctx.api.get("/v1/sessions")).get("sessions", [])
    pending = (await ctx.api.get("/v1/changes/pending", limit=PENDING_LIMIT)
               ).get("changes", [])
    plane = await ctx.api.get("/v1/status")
    healthy = health_code == 200 and isinstance(health, dict) and health.get("status") == "ok"
    is_ready = ready_code == 200
    live = sum(1 for s in sessions if s.get("live"))
    report = {
        "api": ctx.target.base_url,
        "health": health, "ready": ready, "principal": who,
        "sessions": {"total": len(sessions), "live": live},
        "pending_changes": len(pending),
        "runtime": {key: plane.get(key) for key in
                    ("runtime", "runtime_strength", "runtime_warning")},
        "channels": plane.get("channels", []),
    }
    if ctx.json_mode:
        ctx.console.json(report)
    else:
        out = ctx.console
        version = health.get("version") if isinstance(health, dict) else None
        out.line(f"api        {ctx.target.base_url}  "
                 f"{'ok' if healthy else f'unhealthy (HTTP {health_code})'}"
                 f"{f' (version {version})' if version else ''}")
        failing = _failing(ready)
        out.line(f"ready      {'yes' if is_ready else 'NO'}"
                 f"{'  failing: ' + ', '.join(failing) if failing else ''}")
        out.line(f"principal  {who.get('name')} ({', '.join(who.get('roles') or [])})")
        out.line(f"sessions   {len(sessions)} ({live} live)")
        more = "+" if len(pending) >= PENDING_LIMIT else ""
        out.line(f"pending    {len(pending)}{more} change(s)")
        out.line(f"sandbox    {plane.get('runtime')} ({plane.get('runtime_strength')})")
        if plane.get("runtime_warning"):
            out.line(f"           WARNING: {plane['runtime_warning']}")
        for channel in plane.get("channels", []):
            name = f"{channel.get('channel')}/{channel.get('instance') or 'default'}"
            out.line(f"channel    {name}: {channel.get('status')}")
    return OK if healthy and is_ready else FAILED


@attrs.frozen
class Check:
    name: str
    status: str
    detail: str


async def _api_checks(ctx: Ctx) -> list[Check]:
    checks: list[Check] = []
    base = ctx.target.base_url
    try:
        code, health = await _probe(ctx, "/healthz")
    except CliError as exc:
        return [Check("api", FAIL, exc.message),
                Check("token", FAIL, "not checked: the API is unreachable"),
                Check("readiness", FAIL, "not checked: the API is unreachable")]
    version = health.get("version") if isinstance(health, dict) else None
    checks.append(Check("api", PASS, f"reachable at {base} (version {version})")
                  if code == 200 else Check("api", FAIL, f"/healthz answered HTTP {code}"))
    if not ctx.token:
        checks.append(Check("token", FAIL, f"no token: set {ENV_TOKEN} or pass --token"))
    else:
        try:
            who = await ctx.api.get("/v1/whoami")
            checks.append(Check("token", PASS, f"valid: principal {who.get('name')} "
                                               f"({', '.join(who.get('roles') or [])})"))
        except ApiFailure as exc:
            checks.append(Check("token", FAIL, f"refused: {exc.message}"
                                + _revoked_owner_hint(ctx, exc)))
    code, ready = await _probe(ctx, "/readyz")
    if code == 200:
        checks.append(Check("readiness", PASS, "ready"))
    else:
        failing = ", ".join(_failing(ready)) or f"HTTP {code}"
        checks.append(Check("readiness", FAIL, f"not ready: {failing}"))
    try:
        plane = await ctx.api.get("/v1/status")
    except ApiFailure as exc:
        plane = {}
        checks.append(Check("sandbox", FAIL, f"status unavailable: {exc.message}"))
    strength = plane.get("runtime_strength")
    if strength == "gvisor":
        checks.append(Check("sandbox", PASS, f"{plane.get('runtime')}: gVisor between "
                                             "agents and the host kernel"))
    elif strength is not None:
        checks.append(Check("sandbox", WARN, f"{plane.get('runtime')}: "
                                             f"{plane.get('runtime_warning') or strength}"))
    for channel in plane.get("channels", []):
        name = f"channel {channel.get('channel')}/{channel.get('instance') or 'default'}"
        state = channel.get("status")
        checks.append(Check(name, PASS if state == "up" else
                            WARN if state == "starting" else FAIL, str(state)))
    if not ctx.target.loopback and ctx.target.scheme == "http":
        checks.append(Check("transport", WARN, "plain HTTP to a non-loopback address: the "
                                               "token crosses the network unencrypted"))
    return checks


def _revoked_owner_hint(ctx: Ctx, failure: ApiFailure) -> str:
    """Why the daemon may refuse the environment's token: the API does not tell an
    unauthenticated caller whose token it was, so doctor names the likely cause."""
    if failure.status != 401 or not ctx.token or ctx.token != ctx.env.get(ENV_TOKEN):
        return ""
    return (f". If this {ENV_TOKEN} is the daemon's own, note that the daemon refuses it "
            "once the 'owner' principal has been revoked (a revoked principal stays "
            "revoked; its log says 'IRONCLAW_API_TOKEN is refused' and the audit has an "
            "api.env_token_refused entry): use another owner's token")


def runtime_check(env: Mapping[str, str]) -> Check:
    search = env.get("PATH", os.defpath)
    found = {name: shutil.which(name, path=search) for name in RUNTIMES}
    present = [f"{name} ({where})" for name, where in found.items() if where]
    if found["runsc"]:
        return Check("runtime", PASS, "present: " + ", ".join(present))
    if present:
        return Check("runtime", WARN, "no gVisor (runsc); present: " + ", ".join(present)
                     + ". Sandboxes would share the host kernel")
    return Check("runtime", WARN, "no runsc, runc or crun on PATH: only the 'process' "
                                  "runtime, which gives agents NO isolation (dev only)")


def credentials_check(env: Mapping[str, str]) -> Check:
    present = [name for name in MODEL_CREDENTIALS if env.get(name)]
    if present:
        return Check("model credentials", PASS, "set in this environment: "
                     + ", ".join(present))
    return Check("model credentials", WARN, "none of " + ", ".join(MODEL_CREDENTIALS)
                 + " is set in this environment; only the mock provider would work "
                   "(the daemon's own environment is what counts)")


def state_dir_check(where: Path) -> Check:
    try:
        info = os.lstat(where)
    except FileNotFoundError:
        return Check("state dir", FAIL, f"{where} does not exist")
    except OSError as exc:
        return Check("state dir", FAIL, f"{where}: {exc.strerror or exc}")
    if stat.S_ISLNK(info.st_mode):
        return Check("state dir", FAIL, f"{where} is a symlink; point at the real directory")
    if not stat.S_ISDIR(info.st_mode):
        return Check("state dir", FAIL, f"{where} is not a directory")
    problems = []
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        problems.append(f"owned by uid {info.st_uid}, not by this user ({os.geteuid()})")
    # 0711 is what the OCI isolator sets: others may enter (a sandbox's runtime must
    # reach its binds from inside a user namespace) but never list or read.
    if mode & 0o066:
        problems.append(f"mode {mode:04o} lets group/others read or write "
                        "(want 0700, or 0711 with OCI runtimes)")
    try:
        for entry in sorted(os.scandir(where), key=lambda e: e.name)[:1000]:
            sub = entry.stat(follow_symlinks=False)
            if stat.S_IMODE(sub.st_mode) & (stat.S_IWGRP | stat.S_IWOTH) \
                    and not stat.S_ISLNK(sub.st_mode):
                problems.append(f"{entry.name} is writable by group/others")
    except OSError as exc:
        problems.append(f"cannot list it: {exc.strerror or exc}")
    if problems:
        return Check("state dir", FAIL, f"{where}: " + "; ".join(problems))
    return Check("state dir", PASS, f"{where} is private (mode {mode:04o})")


def channel_config_checks(path: Path) -> list[Check]:
    """The daemon config's channels, checked locally (no platform is contacted)."""
    from ironclaw.host.channels.adapters import check_settings
    from ironclaw.host.config.file import ConfigFileError, load_config_file

    try:
        loaded = load_config_file(path)
    except ConfigFileError as exc:
        return [Check("config", FAIL, str(exc))]
    checks = [Check("config", PASS, f"{path}: {len(loaded['channels'])} channel(s)")]
    for settings in loaded["channels"]:
        problems = check_settings(settings)
        checks.append(Check(f"config {settings.label}", FAIL if problems else PASS,
                            "; ".join(problems) if problems else "settings look usable"))
    return checks


async def cmd_doctor(ctx: Ctx) -> int:
    checks = await _api_checks(ctx)
    checks.append(runtime_check(ctx.env))
    checks.append(credentials_check(ctx.env))
    if ctx.args.state_dir is not None:
        checks.append(state_dir_check(Path(ctx.args.state_dir)))
    if getattr(ctx.args, "config", None) is not None:
        checks.extend(channel_config_checks(Path(ctx.args.config)))
    failed = any(c.status == FAIL for c in checks)
    if ctx.json_mode:
        ctx.console.json({"ok": not failed, "checks": [attrs.asdict(c) for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            ctx.console.line(f"{check.status}  {check.name.ljust(width)}  {check.detail}")
        ctx.console.line("doctor: " + ("FAILED" if failed else "all required checks pass"))
    return FAILED if failed else OK
