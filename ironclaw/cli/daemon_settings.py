"""What the daemon and its subcommands (``init``, ``backup``) run with: the command
line over the ``--config`` file over the defaults, resolved in one place so that
``init`` checks exactly the setup the daemon will then run.

The defaults differ by mode: ``--dev`` keeps state in ``./state``; production keeps it
in ``/var/lib/ironclaw``. The flag wins over the file, the file over the default.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from ironclaw.host.api import ApiSettings
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.file import DAEMON_KEYS, load_config_file
from ironclaw.host.isolation.pool import PoolSettings

DEFAULT_STATE_DIR = Path("/var/lib/ironclaw")
DEV_STATE_DIR = Path("state")
DEFAULT_API_ADDR = "127.0.0.1:8787"


@attrs.frozen
class DaemonSettings:
    config: ControlPlaneConfig
    api: ApiSettings | None
    log_format: str
    # The state directory as named (config.state_dir has symlinks resolved).
    named_state_dir: Path


def state_dir_from(args: argparse.Namespace, from_file: dict[str, Any]) -> Path:
    """``--state-dir``, else the file's ``state_dir``, else the mode's default; as
    named (absolute, symlinks kept)."""
    chosen = args.state_dir or from_file.get("state_dir") or (
        DEV_STATE_DIR if getattr(args, "dev", False) else DEFAULT_STATE_DIR)
    return Path(chosen).absolute()


def resolve(args: argparse.Namespace) -> DaemonSettings:
    """Raises ValueError (a usage error) with a message fit to print."""
    from_file = load_config_file(args.config) if args.config is not None else {}
    state_dir = state_dir_from(args, from_file)
    from_file.pop("state_dir", None)
    daemon = {key: from_file.pop(key) for key in DAEMON_KEYS if key in from_file}
    dev = getattr(args, "dev", False)
    if args.runtime is not None:
        from_file["runtime"] = args.runtime
    # Production serves the mock model only when the file asks; --dev always does.
    from_file["mock_model"] = dev or from_file.get("mock_model", False)
    provider, model = getattr(args, "provider", None), getattr(args, "model", None)
    if provider is not None or model is not None:
        if not dev:
            raise ValueError("--provider and --model choose the --dev demo agent's "
                             "model; other agents get theirs through the gateway")
        from_file["dev_provider"] = provider or "mock"
        from_file["dev_model"] = model or provider or "mock"
    # The daemon keeps warm sandboxes unless the file says otherwise: small in --dev.
    from_file.setdefault("sandbox_pool", PoolSettings.for_dev() if dev else PoolSettings())
    config = ControlPlaneConfig(state_dir=state_dir.resolve(), dev=dev,
                                allow_insecure_runtime=args.allow_insecure_runtime,
                                **from_file)
    api = None
    if not getattr(args, "no_api", False):
        addr = args.api_addr or daemon.get("api_addr") or DEFAULT_API_ADDR
        try:
            api = ApiSettings.parse_addr(addr, allow_public=bool(
                args.api_allow_public or daemon.get("api_allow_public", False)))
            api.check_bind()
        except ValueError as exc:
            raise ValueError(f"--api-addr: {exc}") from None
    log_format = getattr(args, "log_format", None) or daemon.get("log_format", "text")
    return DaemonSettings(config=config, api=api, log_format=log_format,
                          named_state_dir=state_dir)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line (``ts``, ``level``, ``logger``, ``msg``, and ``exc``
    with a traceback): journald keeps each line as one entry, and a collector parses
    it without a pattern. Messages carry ids and counts only, as the audit does."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name,
            "msg": record.getMessage()}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler], force=True)
