"""MCP servers for agents: the operator's catalogue, the per-session ``mcp.sock`` broker
and the launchers that run each server instance.

A session gets ``mcp.sock`` only when its agent group holds an ``mcp_access`` grant. The
broker lists the granted tools (named ``<server>__<tool>``) and runs calls, starting one
server instance per session per server at first use, through the runtime's
:class:`~ironclaw.host.mcp.launch.McpServerLauncher`. See ``docs/mcp.md``.
"""

from ironclaw.host.mcp.broker import McpBroker as McpBroker
from ironclaw.host.mcp.broker import McpGrants as McpGrants
from ironclaw.host.mcp.config import McpCatalogEntry as McpCatalogEntry
from ironclaw.host.mcp.config import McpConfig as McpConfig
from ironclaw.host.mcp.config import McpLimits as McpLimits
from ironclaw.host.mcp.events import McpCall as McpCall
from ironclaw.host.mcp.events import McpServer as McpServer
from ironclaw.host.mcp.launch import LAUNCHERS as LAUNCHERS
from ironclaw.host.mcp.launch import LauncherUnavailable as LauncherUnavailable
from ironclaw.host.mcp.launch import McpServerEntry as McpServerEntry
from ironclaw.host.mcp.launch import McpServerLauncher as McpServerLauncher
from ironclaw.host.mcp.launch import ProcessLauncher as ProcessLauncher
from ironclaw.host.mcp.launch import ServerPlace as ServerPlace
from ironclaw.host.mcp.launch import StdioPipes as StdioPipes
from ironclaw.host.mcp.launch import launcher_for_runtime as launcher_for_runtime
from ironclaw.host.mcp.mailbox import McpRoute as McpRoute
