"""``fileops mcp``: the agent tools as an MCP server, for agents outside LangChain.

The same four tools as :func:`fileops_daemon.client.toolkit.file_ops_tools` (preview, apply,
status, undo; the same strict argument schemas and descriptions), built on the official MCP
Python SDK's low-level server so each tool's JSON schema is sent exactly as written. Each call
answers the text a model reads and, as structured content, the whole result document.

Transports: stdio (what desktop clients launch), or streamable HTTP bound to a loopback
address. The HTTP server has no authentication of its own: whoever reaches it publishes plans
with this process's Pub/Sub identity, so it never listens beyond this machine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from fileops_daemon import __version__
from fileops_daemon.client.toolargs import PLAN_ARGS, STATUS_ARGS, UNDO_ARGS
from fileops_daemon.client.toolbox import FileOpsTools
from fileops_daemon.client.toolkit import (
    APPLY_DESCRIPTION,
    PREVIEW_DESCRIPTION,
    STATUS_DESCRIPTION,
    UNDO_DESCRIPTION,
    model_answer,
)

__all__ = [
    "INSTRUCTIONS",
    "build_server",
    "check_loopback",
    "http_url",
    "serve_http",
    "serve_stdio",
    "transport_security",
]

INSTRUCTIONS = (
    "Reorganise a case folder: preview_file_ops first, show the user what would change, then "
    "apply_file_ops with the same plan. file_ops_status follows up a 'pending' answer; "
    "undo_file_ops reverts an applied plan."
)

Action = Callable[..., Awaitable[dict[str, Any]]]


def _tool_table(tools: FileOpsTools) -> dict[str, tuple[str, dict[str, Any], Action]]:
    return {
        "preview_file_ops": (PREVIEW_DESCRIPTION, PLAN_ARGS, tools.apreview),
        "apply_file_ops": (APPLY_DESCRIPTION, PLAN_ARGS, tools.aapply),
        "file_ops_status": (STATUS_DESCRIPTION, STATUS_ARGS, tools.astatus),
        "undo_file_ops": (UNDO_DESCRIPTION, UNDO_ARGS, tools.aundo),
    }


def build_server(tools: FileOpsTools | None = None) -> Any:
    """An MCP ``Server`` exposing the four tools (``tools``: None uses the shared client)."""
    import mcp_types as types
    from mcp.server import Server

    table = _tool_table(tools or FileOpsTools())

    async def list_tools(_ctx: Any, _params: Any) -> Any:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=name, description=description, input_schema=schema)
                for name, (description, schema, _action) in table.items()
            ]
        )

    async def call_tool(_ctx: Any, params: Any) -> Any:
        entry = table.get(params.name)
        if entry is None:
            return _error(
                types, f"no tool named {params.name!r}; the tools are: {', '.join(table)}"
            )
        _description, schema, action = entry
        arguments = dict(params.arguments or {})
        expected = set(schema["properties"])
        unknown = sorted(set(arguments) - expected)
        if unknown:
            return _error(
                types, f"unknown argument(s) {unknown}; {params.name} takes {sorted(expected)}"
            )
        # Strict clients send every field (null when unused); others may leave nulls out.
        for name in expected - set(arguments):
            arguments[name] = None
        result = await action(**arguments)
        text, document = model_answer(result)
        return types.CallToolResult(
            content=[types.TextContent(text=text)],
            structured_content=document,
            is_error=document.get("status") == "error",
        )

    return Server(
        "fileops",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _error(types: Any, message: str) -> Any:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def check_loopback(host: str) -> None:
    """Refuse to listen beyond this machine: the server has no authentication."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"--host {host!r} is not a loopback address: the MCP server has no authentication "
            "and publishes plans with this machine's credentials (use 127.0.0.1 or ::1)"
        )


async def serve_stdio(server: Any) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def transport_security(host: str, port: int) -> Any:
    """The Host/Origin check (DNS-rebinding protection) for a server bound to ``host``.

    The SDK turns it on by itself only for exactly ``127.0.0.1``, ``localhost`` and ``::1``;
    :func:`check_loopback` accepts every loopback spelling (``127.0.0.2``,
    ``0:0:0:0:0:0:0:1``), so it is always passed. Allowed: the address as given and in its
    canonical spelling (``localhost`` also as 127.0.0.1 and ::1), on this port only (any port
    when ``port`` is 0 and the system picks it).
    """
    from mcp.server.transport_security import TransportSecuritySettings

    names = {host}
    if host == "localhost":
        names |= {"127.0.0.1", "::1"}
    else:
        names.add(ipaddress.ip_address(host).compressed)
    suffix = str(port) if port else "*"
    hosts = sorted(f"[{name}]" if ":" in name else name for name in names)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:{suffix}" for name in hosts],
        allowed_origins=[f"http://{name}:{suffix}" for name in hosts],
    )


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/mcp" if ":" in host else f"http://{host}:{port}/mcp"


def serve_http(server: Any, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted; ``announce`` is called
    with that URL once the socket listens (port 0: the port the system picked)."""
    import uvicorn

    check_loopback(host)
    app = server.streamable_http_app(host=host, transport_security=transport_security(host, port))

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                bound = port or int(self.servers[0].sockets[0].getsockname()[1])
                announce(http_url(host, bound))

    _Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
