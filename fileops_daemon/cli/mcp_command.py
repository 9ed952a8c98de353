"""``fileops mcp``: the agent tools as an MCP server (stdio, or streamable HTTP on loopback)."""

from __future__ import annotations

import argparse
import sys

from fileops_daemon.contract.exitcodes import EXIT_CONFIG, EXIT_OK, EXIT_USAGE

__all__ = ["add_command", "mcp_command"]


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mcp_help = "serve the agent tools over MCP (stdio; --http: streamable HTTP on loopback)"
    mcp = commands.add_parser("mcp", help=mcp_help, description=mcp_help)
    mcp.add_argument("--http", action="store_true", help="serve http://HOST:PORT/mcp, not stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    mcp.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")


def mcp_command(args: argparse.Namespace) -> int:
    try:
        import mcp  # noqa: F401  (an extra: the daemon does not need it)
    except ImportError:
        print(
            "fileops: mcp needs the MCP SDK: install fileops-daemon with its mcp extra "
            "(pip install 'fileops_daemon-VERSION-py3-none-any.whl[mcp]'; docs/agents.md)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    from fileops_daemon.client import mcp_server

    if args.http:  # before anything else: a refused address is a usage error, at once
        try:
            mcp_server.check_loopback(args.host)
        except ValueError as exc:
            print(f"fileops: {exc}", file=sys.stderr)
            return EXIT_USAGE
    server = mcp_server.build_server()
    if not args.http:
        import anyio

        anyio.run(mcp_server.serve_stdio, server)
        return EXIT_OK
    mcp_server.serve_http(server, args.host, args.port, announce=_serving)
    return EXIT_OK


def _serving(url: str) -> None:
    print(
        f"fileops: MCP serving on {url} (streamable HTTP; Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
